// What kiln-run and kiln-bench share (tools/device_runner.h).
#include "tools/device_runner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "compiler/compile.h"
#include "ir/float16.h"
#include "ir/interpreter.h"
#include "passes/pass_manager.h"
#include "runtime/cuda/cuda_device.h"
#include "runtime/vulkan/vulkan_device.h"
#include "tools/tool_common.h"

namespace kiln::tools {

Expected<std::vector<int64_t>> parseDims(const ir::Graph &g, std::string_view text) {
  std::vector<int64_t> vals(g.dims.size(), -1);
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    size_t eq = item.find('=');
    std::string name(item.substr(0, eq));
    int d = eq == std::string_view::npos ? -1 : g.findDim(name);
    if (d < 0)
      return makeError("error: --dims: '" + std::string(item) + "' does not name a dim of @" +
                       g.name + " as NAME=VALUE");
    std::string value(item.substr(eq + 1));
    char *end = nullptr;
    long long v = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0')
      return makeError("error: --dims: '" + value + "' is not an integer");
    vals[d] = v;
  }
  for (size_t i = 0; i < vals.size(); ++i)
    if (vals[i] < 0)
      return makeError("error: --dims: no value for dim " + g.dims[i].name);
  if (Status s = ir::checkDims(g, vals); s.failed())
    return makeError("error: --dims: " + s.message());
  return vals;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

Expected<std::vector<ir::HostTensor>> Runner::run(const std::vector<int64_t> &dims,
                                                  const std::vector<ir::HostTensor> &in, int iters,
                                                  double &us) {
  std::vector<double> times;
  std::vector<ir::HostTensor> outs;
  std::vector<runtime::Bytes> bytes;
  if (plan)
    for (const ir::HostTensor &t : in)
      bytes.push_back(ir::toBytes(t));
  for (int it = 0; it < iters; ++it) {
    auto start = std::chrono::steady_clock::now();
    if (!plan) {
      auto r = ir::interpret(g, dims, in);
      if (!r)
        return r.error();
      outs = std::move(*r);
      for (ir::HostTensor &t : outs) // outputs are stored in their dtype, as on a device
        for (double &x : t.data)
          x = ir::roundToDType(x, t.dtype);
      times.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
              .count());
      continue;
    }
    std::vector<runtime::Bytes> outBytes;
    runtime::RunStats stats;
    if (Status s = plan->run(dims, bytes, outBytes, &stats); s.failed())
      return makeError("error: " + s.message());
    times.push_back(stats.deviceMicros > 0 ? stats.deviceMicros : stats.hostMicros);
    totals.kernels += stats.kernels;
    totals.barriers += stats.barriers;
    totals.submits += stats.submits;
    totals.rerecords += stats.rerecords;
    lastSpans = std::move(stats.kernelSpans);
    outs.clear();
    for (size_t i = 0; i < outBytes.size(); ++i) {
      const ir::TensorType &t = g.typeOf(g.outputs[i]);
      outs.push_back(ir::fromBytes(t.dtype, ir::evalShape(t.shape, dims), outBytes[i]));
    }
  }
  us = median(times);
  return outs;
}

bool deviceKind(const std::string &dev, const std::string &kind, int &index) {
  index = -1;
  if (dev == kind)
    return true;
  size_t n = kind.size() + 1;
  if (!dev.starts_with(kind + ":") || dev.size() == n ||
      dev.find_first_not_of("0123456789", n) != std::string::npos)
    return false;
  index = std::atoi(dev.c_str() + n);
  return true;
}

int checkDevice(const std::string &dev, const char *tool) {
  int index;
  if (dev != "auto" && dev != "ref" && !deviceKind(dev, "vulkan", index) &&
      !deviceKind(dev, "cuda", index))
    return tools::usageError(tool, "unknown --device '" + dev + "'");
  return 0;
}

Status runDefaultPipeline(ir::Graph &g) {
  passes::PassManager pm;
  if (Status s = pm.addPipeline(passes::defaultPipeline()); s.failed())
    return s;
  return pm.run(g);
}

Status loadOnDevice(const std::string &dev, bool validate, const compiler::CompileOptions &cuda,
                    const ir::Graph &g, Runner &runner, runtime::Executable &exe,
                    std::string &deviceName) {
  int index = -1;
  bool onCuda = deviceKind(dev, "cuda", index);
  if (validate && (onCuda || dev == "ref"))
    return makeError("error: --validate: only Vulkan devices have a validation layer");
  if (dev == "ref")
    return Status::ok();
  if (!onCuda)
    deviceKind(dev, "vulkan", index);
  compiler::CompileOptions opts;
  if (onCuda) { // PTX for the device's architecture instead of SPIR-V
    auto list = runtime::listCudaDevices();
    if (!list)
      return makeError("error: --device=" + dev + ": " + list.message());
    if (list->empty() || index >= static_cast<int>(list->size()))
      return makeError("error: --device=" + dev + ": no such CUDA device");
    opts.spirv = false;
    opts.ptx = true;
    opts.matrixUnits = true;
    opts.warpgroupMatrix = cuda.warpgroupMatrix;
    opts.quickPtx = cuda.quickPtx;
    opts.smArch = (*list)[index < 0 ? 0 : index].arch;
  }
  if (validate)
    setenv("KILN_VK_VALIDATE", "1", 1);
  auto device = onCuda ? runtime::openCudaDevice(index) : runtime::openVulkanDevice(index);
  if (device && validate && (*device)->describe().find("validation on") == std::string::npos)
    return makeError("error: --validate: VK_LAYER_KHRONOS_validation is not installed");
  if (!device && dev == "auto" && !validate) {
    std::fprintf(stderr, "kiln-run: no Vulkan device (%s); using the reference interpreter\n",
                 device.message().c_str());
    return Status::ok();
  }
  if (!device)
    return makeError("error: --device=" + dev + ": " + device.message());
  auto compiled = compiler::compileGraph(g, opts);
  if (!compiled)
    return compiled.error();
  exe = std::move(*compiled);
  auto plan = (*device)->load(exe);
  if (!plan)
    return makeError("error: " + plan.message());
  runner.plan = std::move(*plan);
  deviceName = (*device)->describe();
  return Status::ok();
}

const passes::DeviceProfile &profileFor(const std::string &deviceName) {
  const char *name = deviceName.starts_with("cuda")                     ? "h200"
                     : deviceName.find("llvmpipe") != std::string::npos ? "lavapipe"
                                                                        : "vulkan-gpu";
  if (deviceName.find("H100") != std::string::npos)
    name = "h100";
  const passes::DeviceProfile *p = passes::findDeviceProfile(name);
  return p ? *p : passes::deviceProfiles()[0];
}

} // namespace kiln::tools
