// What kiln-run and kiln-bench share: choosing a device, loading a graph on it compiled
// for it, and timing runs.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compiler/compile.h"
#include "ir/graph.h"
#include "ir/host_tensor.h"
#include "passes/cost_model.h"
#include "runtime/device.h"

namespace kiln::tools {

// The values of `g`'s symbolic dims that `text` ("N=V,N=V") binds, checked against their
// ranges; every dim needs one.
Expected<std::vector<int64_t>> parseDims(const ir::Graph &g, std::string_view text);

double median(std::vector<double> v);

// Runs the graph once per iteration; returns its outputs and the median time in µs.
struct Runner {
  const ir::Graph &g;
  std::unique_ptr<runtime::Plan> plan;              // null: the reference interpreter
  runtime::RunStats totals;                         // counts summed over every run (times unused)
  std::vector<std::pair<double, double>> lastSpans; // the last run's kernels, as timed

  // Runs the graph `iters` times at `dims` on `in`; gives the last run's outputs and,
  // in `us`, the median time (device time where the device measures it).
  Expected<std::vector<ir::HostTensor>> run(const std::vector<int64_t> &dims,
                                            const std::vector<ir::HostTensor> &in, int iters,
                                            double &us);
};

// Whether `dev` is `kind` or `kind:N`; `index` gets N, or -1.
bool deviceKind(const std::string &dev, const std::string &kind, int &index);

// Refuses a --device value before any work is done: a usage error of `tool`, or 0.
int checkDevice(const std::string &dev, const char *tool);

// Runs the default pass pipeline on `g`, as a graph is before it compiles.
Status runDefaultPipeline(ir::Graph &g);

// Opens the device `dev` names (auto: the best Vulkan device, else the reference
// interpreter) and loads `g` (already through the pass pipeline) on it, compiled for it;
// leaves `runner.plan` null for the reference interpreter.
// `cuda`: the tool's choices for a CUDA device (warpgroupMatrix, quickPtx); the device
// sets the rest.
Status loadOnDevice(const std::string &dev, bool validate, const compiler::CompileOptions &cuda,
                    const ir::Graph &g, Runner &runner, runtime::Executable &exe,
                    std::string &deviceName);

// The device profile whose predictions fit the device `deviceName` describes best.
const passes::DeviceProfile &profileFor(const std::string &deviceName);

} // namespace kiln::tools
