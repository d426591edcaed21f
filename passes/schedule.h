// The kernel program of a fused graph and its three schedule forms (queue barriers,
// CUDA-graph edges, streams with events), all from one dependence analysis, with the
// checker that proves every conflicting pair of kernels ordered.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/cost_model.h"
#include "passes/dependence.h"

namespace kiln::passes {

struct KernelInfo {
  std::string name;
  std::vector<int> nodes; // graph nodes computed by the kernel
  Accesses accesses;      // what reaches device memory: internal values are left out
  Cost cost;
  double micros = 0;
};

// Kernels in program order: the graph's kernel blocks, and every computed node that is
// in none as a kernel of its own.
struct KernelProgram {
  std::vector<std::string> valueNames; // per graph node, for messages
  std::vector<bool> callerOwned;       // per graph node: an input, param, constant or output buffer
  std::vector<Layout> layouts;
  std::vector<KernelInfo> kernels;
  DependenceGraph deps; // over kernels
};

Expected<KernelProgram> buildKernelProgram(const ir::Graph &g, const DeviceProfile &p);

// Recomputes prog.deps from the kernels' accesses and times (after they change).
void analyzeKernelDependences(KernelProgram &prog);

struct Barrier {
  int position;               // sits before order[position]
  std::vector<Access> guards; // the buffer ranges whose hazards it orders
};

// Queue form (Vulkan, Metal): an order and the fewest barrier points.
struct QueueForm {
  std::vector<int> order;
  std::vector<Barrier> barriers;
};

// Graph form (CUDA graphs): the transitively reduced kernel DAG, (from, to) edges.
struct GraphForm {
  std::vector<std::pair<int, int>> edges;
};

// Stream form (CUDA streams): kernels assigned to streams; an event is recorded after
// `first` on its stream and waited for before `second` on another.
struct StreamForm {
  std::vector<int> streamOf;             // per kernel
  std::vector<std::vector<int>> streams; // kernels of each stream, in launch order
  std::vector<std::pair<int, int>> events;
};

struct Schedule {
  QueueForm queue;
  GraphForm graph;
  StreamForm streams;
  int waves = 0;
  double predictedMicros = 0;
  std::vector<double> start; // predicted start of each kernel, in us
};

Schedule placeBarriers(const KernelProgram &prog, const DeviceProfile &p);

// Each checker returns an error naming the first conflicting pair left unordered.
Status checkQueue(const KernelProgram &prog, const QueueForm &q);
Status checkGraph(const KernelProgram &prog, const GraphForm &f);
Status checkStreams(const KernelProgram &prog, const StreamForm &s);

} // namespace kiln::passes
