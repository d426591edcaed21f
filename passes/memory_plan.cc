// Memory planning: lifetimes from the kernel DAG, then first fit by decreasing size.
#include "passes/memory_plan.h"

#include <algorithm>
#include <map>

namespace kiln::passes {

namespace {

int64_t alignUp(int64_t x) { return (x + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

// Whether every access of `a` happens before every access of `b`.
bool ordered(const ArenaBuffer &a, const ArenaBuffer &b, const Reachability &hb) {
  for (int x : a.kernels)
    for (int y : b.kernels)
      if (!hb.before(x, y))
        return false;
  return true;
}

bool mayShare(const ArenaBuffer &a, const ArenaBuffer &b, const Reachability &hb) {
  return ordered(a, b, hb) || ordered(b, a, hb);
}

} // namespace

MemoryPlan planMemory(const KernelProgram &prog, const Schedule &s) {
  MemoryPlan m;
  const DependenceGraph &d = prog.deps;
  // Buffers that kernels write and the caller does not own.
  std::map<int, ArenaBuffer> byBuffer;
  for (size_t k = 0; k < prog.kernels.size(); ++k) {
    const KernelInfo &info = prog.kernels[k];
    for (const Access &a : info.accesses.writes) {
      if (!prog.callerOwned[a.buffer])
        byBuffer[a.buffer].buffer = a.buffer;
    }
  }
  for (auto &[buffer, ab] : byBuffer) {
    ab.bytes = prog.layouts[buffer].range.end;
    for (size_t k = 0; k < prog.kernels.size(); ++k) {
      const KernelInfo &info = prog.kernels[k];
      bool touches = false;
      for (const auto *list : {&info.accesses.reads, &info.accesses.writes})
        for (const Access &a : *list)
          touches |= a.buffer == buffer;
      if (touches)
        ab.kernels.push_back(static_cast<int>(k));
    }
    ab.firstWave = d.asap[ab.kernels.front()];
    ab.lastWave = ab.firstWave;
    for (int k : ab.kernels)
      ab.lastWave = std::max(ab.lastWave, d.asap[k]);
  }
  for (auto &[buffer, ab] : byBuffer)
    m.buffers.push_back(ab);

  // First fit, largest first, against every placed buffer it may not share bytes with.
  Reachability hb(d);
  std::vector<int> order(m.buffers.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return m.buffers[a].bytes > m.buffers[b].bytes; });
  std::vector<int> placed;
  for (int i : order) {
    ArenaBuffer &b = m.buffers[i];
    std::vector<std::pair<int64_t, int64_t>> taken;
    for (int j : placed)
      if (!mayShare(b, m.buffers[j], hb))
        taken.push_back({m.buffers[j].offset, m.buffers[j].offset + m.buffers[j].bytes});
    std::sort(taken.begin(), taken.end());
    int64_t at = 0;
    for (auto [lo, hi] : taken) {
      if (at + b.bytes <= lo)
        break;
      at = std::max(at, alignUp(hi));
    }
    b.offset = at;
    m.arenaBytes = std::max(m.arenaBytes, at + b.bytes);
    placed.push_back(i);
  }

  for (int w = 0; w < s.waves; ++w) {
    int64_t live = 0;
    for (const ArenaBuffer &b : m.buffers)
      if (b.firstWave <= w && w <= b.lastWave)
        live += b.bytes;
    m.lowerBoundBytes = std::max(m.lowerBoundBytes, live);
  }
  return m;
}

Status checkMemoryPlan(const KernelProgram &prog, const MemoryPlan &m) {
  Reachability hb(prog.deps);
  for (size_t i = 0; i < m.buffers.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      const ArenaBuffer &a = m.buffers[i], &b = m.buffers[j];
      bool overlap = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes &&
                     a.bytes > 0 && b.bytes > 0;
      if (overlap && !mayShare(a, b, hb))
        return makeError("memory: " + prog.valueNames[a.buffer] + " and " +
                         prog.valueNames[b.buffer] +
                         " share arena bytes but their kernels may run at the same time");
    }
  return Status::ok();
}

} // namespace kiln::passes
