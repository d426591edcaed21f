// The compile pipeline: lower, then run each target's emitter on every kernel.
#include "compiler/compile.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cctype>
#include <numeric>
#include <set>
#include <thread>
#include <unordered_map>

#include "compiler/lower.h"
#include "compiler/nvptx/emit_nvptx.h"
#include "compiler/spirv/emit_spirv.h"
#include "passes/module.h"
#include "runtime/device.h"

namespace kiln::compiler {

void forEachKernel(size_t count, const std::function<void(size_t)> &emit) {
  size_t threads = std::min<size_t>(count, std::max(1u, std::thread::hardware_concurrency()));
  if (threads <= 1) {
    for (size_t i = 0; i < count; ++i)
      emit(i);
    return;
  }
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < count;)
        emit(i);
    });
  for (std::thread &t : pool)
    t.join();
}

namespace {

// Everything of a kernel but its names, as bytes: equal keys, equal code.
std::string codeKey(const Kernel &k) {
  std::string key;
  auto put = [&](int64_t v) { key.append(reinterpret_cast<const char *>(&v), sizeof v); };
  put(k.numDims);
  put(k.guard);
  put(k.guardEnd);
  put(static_cast<int64_t>(k.buffers.size()));
  for (const KBuffer &b : k.buffers) {
    put(static_cast<int64_t>(b.elem));
    put(b.written);
  }
  put(static_cast<int64_t>(k.shared.size()));
  for (const KShared &a : k.shared) {
    put(static_cast<int64_t>(a.elem));
    put(a.size);
  }
  for (const KInst &in : k.body) {
    put(static_cast<int64_t>(in.op));
    put(static_cast<int64_t>(in.type));
    put(in.imm);
    put(std::bit_cast<uint32_t>(in.fimm));
    put(in.buffer);
    put(static_cast<int64_t>(in.args.size()));
    for (int a : in.args)
      put(a);
  }
  return key;
}

bool identifierChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Puts the kernels in the order of the passes' queue form and gives the Executable its
// barriers (decision 3: one dependence analysis, on byte ranges, synchronizes every
// backend) and its arena. Each barrier keeps the buffers of the ranges it guards; the
// kernels that copy returned views come last, after a barrier for every buffer written
// before them. Temporaries that share arena bytes live in waves the barriers separate.
Status schedule(const ir::Graph &g, LoweredGraph &l) {
  passes::Module m{g};
  if (Status s = m.ensureSchedule(); s.failed())
    return s;
  const passes::KernelProgram &prog = *m.program;
  const passes::QueueForm &queue = m.schedule->queue;
  std::vector<int> kernelOfFirst(g.nodes.size(), -1);
  for (size_t k = 0; k < l.firstNodes.size(); ++k)
    if (l.firstNodes[k] >= 0)
      kernelOfFirst[l.firstNodes[k]] = static_cast<int>(k);
  std::vector<int> order; // lowered kernel indices, in the queue's order
  for (int unit : queue.order) {
    const std::vector<int> &nodes = prog.kernels[unit].nodes;
    int k = nodes.empty() ? -1 : kernelOfFirst[*std::min_element(nodes.begin(), nodes.end())];
    if (k < 0)
      return makeError("error: kiln bug: the passes' kernel " + prog.kernels[unit].name +
                       " matches no lowered kernel");
    order.push_back(k);
  }
  size_t programKernels = order.size();
  for (size_t k = 0; k < l.firstNodes.size(); ++k)
    if (l.firstNodes[k] < 0)
      order.push_back(static_cast<int>(k));
  std::vector<int> seen = order;
  std::sort(seen.begin(), seen.end());
  if (order.size() != l.kernels.size() ||
      std::adjacent_find(seen.begin(), seen.end()) != seen.end())
    return makeError("error: kiln bug: the passes schedule " + std::to_string(programKernels) +
                     " kernels where lowering made " + std::to_string(l.kernels.size()));

  std::vector<runtime::QueueBarrier> barriers;
  for (const passes::Barrier &b : queue.barriers) {
    std::set<int> buffers;
    for (const passes::Access &a : b.guards) {
      int buffer =
          a.buffer < static_cast<int>(l.bufferOfNode.size()) ? l.bufferOfNode[a.buffer] : -1;
      if (buffer < 0)
        return makeError("error: kiln bug: a barrier guards %" + prog.valueNames[a.buffer] +
                         ", which no buffer holds");
      buffers.insert(buffer);
    }
    barriers.push_back({b.position, {buffers.begin(), buffers.end()}});
  }

  // Temporaries share one arena where their waves allow: the passes' memory plan, in the
  // bytes the executable holds them in.
  std::vector<int64_t> most = runtime::largestDims(g.dims), bytes(g.nodes.size(), 0);
  for (size_t id = 0; id < g.nodes.size(); ++id)
    if (int b = l.bufferOfNode[id]; b >= 0)
      bytes[id] = runtime::bufferBytes(l.exe.buffers[b], most);
  passes::MemoryPlan plan = passes::planMemory(prog, bytes);
  for (const passes::ArenaBuffer &ab : plan.buffers)
    if (int b = l.bufferOfNode[ab.buffer];
        b >= 0 && l.exe.buffers[b].role == runtime::BufferRole::Temp)
      l.exe.buffers[b].arenaOffset = ab.offset;
  l.exe.arenaBytes = plan.arenaBytes;

  std::vector<runtime::ExecKernel> exeKernels;
  std::vector<Kernel> kernels;
  for (int k : order) {
    exeKernels.push_back(std::move(l.exe.kernels[k]));
    kernels.push_back(std::move(l.kernels[k]));
  }
  l.exe.kernels = std::move(exeKernels);
  l.kernels = std::move(kernels);
  if (programKernels > 0 && programKernels < order.size())
    barriers.push_back({static_cast<int>(programKernels),
                        runtime::buffersWritten({l.exe.kernels.data(), programKernels})});
  l.exe.barriers = std::move(barriers);
  return Status::ok();
}

} // namespace

std::vector<size_t> firstOfSameCode(const std::vector<Kernel> &kernels) {
  std::unordered_map<std::string, size_t> first;
  std::vector<size_t> same(kernels.size());
  for (size_t i = 0; i < kernels.size(); ++i)
    same[i] = first.try_emplace(codeKey(kernels[i]), i).first->second;
  return same;
}

std::string renamePtx(const std::string &ptx, const std::string &from, const std::string &to) {
  // An occurrence of `from` that starts an identifier and is all of it or the
  // `from`_param_N of a parameter.
  std::string out;
  size_t at = 0;
  for (size_t i; (i = ptx.find(from, at)) != std::string::npos;) {
    size_t end = i + from.size();
    bool starts = i == 0 || !identifierChar(ptx[i - 1]);
    bool whole =
        end == ptx.size() || !identifierChar(ptx[end]) || ptx.compare(end, 7, "_param_") == 0;
    out.append(ptx, at, i - at);
    out += starts && whole ? to : from;
    at = end;
  }
  out.append(ptx, at, std::string::npos);
  return out;
}

LowerOptions lowerOptionsFor(const CompileOptions &opts) {
  return {opts.matrixUnits, opts.matrixUnits && opts.warpgroupMatrix && opts.smArch == "sm_90"};
}

Expected<runtime::Executable> compileGraph(const ir::Graph &g, const CompileOptions &opts) {
  auto lowered = lowerGraph(g, lowerOptionsFor(opts));
  if (!lowered)
    return lowered.error();
  if (Status s = schedule(g, *lowered); s.failed())
    return s;
  runtime::Executable exe = std::move(lowered->exe);
  std::vector<Status> failed(lowered->kernels.size());
  std::vector<size_t> same(lowered->kernels.size());
  std::iota(same.begin(), same.end(), size_t{0});
  if (opts.ptx)
    same = firstOfSameCode(lowered->kernels);
  forEachKernel(lowered->kernels.size(), [&](size_t i) {
    const Kernel &k = lowered->kernels[i];
    if (opts.spirv) {
      auto words = emitSpirv(k);
      if (!words) {
        failed[i] = makeError("error: kernel " + k.name + ": SPIR-V: " + words.message());
        return;
      }
      exe.kernels[i].spirv = std::move(*words);
    }
    if (opts.ptx && same[i] == i) {
      auto ptx = emitPtx(k, opts.smArch, opts.quickPtx);
      if (!ptx) {
        failed[i] = makeError("error: kernel " + k.name + ": PTX: " + ptx.message());
        return;
      }
      exe.kernels[i].ptx = std::move(*ptx);
      exe.kernels[i].dynamicShared = dynamicSharedBytes(k);
    }
  });
  for (const Status &s : failed) // the first kernel's error, whichever thread saw it
    if (s.failed())
      return s;
  for (size_t i = 0; i < same.size(); ++i)
    if (same[i] != i) {
      exe.kernels[i].ptx = renamePtx(exe.kernels[same[i]].ptx, lowered->kernels[same[i]].name,
                                     lowered->kernels[i].name);
      exe.kernels[i].dynamicShared = exe.kernels[same[i]].dynamicShared;
    }
  return exe;
}

} // namespace kiln::compiler
