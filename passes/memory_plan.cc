// Memory planning: lifetimes from the kernel DAG, then first fit by decreasing size.
#include "passes/memory_plan.h"

#include <algorithm>
#include <map>

namespace kiln::passes {

namespace {

int64_t alignUp(int64_t x) { return (x + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

// Whether every access of `a` happens before every access of `b`. Readers of `b` come
// after a writer of it, so checking its writers is enough. Buffers live in overlapping
// waves are never ordered (a kernel that happens before another has a smaller wave),
// which settles most pairs without the DAG.
bool ordered(const ArenaBuffer &a, const ArenaBuffer &b, const Reachability &hb) {
  if (a.lastWave >= b.firstWave)
    return false;
  for (int x : a.kernels)
    for (int y : b.writers)
      if (!hb.before(x, y))
        return false;
  return true;
}

bool mayShare(const ArenaBuffer &a, const ArenaBuffer &b, const Reachability &hb) {
  return ordered(a, b, hb) || ordered(b, a, hb);
}

} // namespace

MemoryPlan planMemory(const KernelProgram &prog, std::span<const int64_t> bytes) {
  MemoryPlan m;
  const DependenceGraph &d = prog.deps;
  // Buffers that kernels write and the caller does not own, with every kernel that
  // touches them (kernels come in program order, so each list is sorted).
  std::map<int, ArenaBuffer> byBuffer;
  for (size_t k = 0; k < prog.kernels.size(); ++k)
    for (const Access &a : prog.kernels[k].accesses.writes)
      if (!prog.callerOwned[a.buffer]) {
        ArenaBuffer &ab = byBuffer[a.buffer];
        ab.buffer = a.buffer;
        ab.writers.push_back(static_cast<int>(k));
      }
  for (size_t k = 0; k < prog.kernels.size(); ++k)
    for (const auto *list : {&prog.kernels[k].accesses.reads, &prog.kernels[k].accesses.writes})
      for (const Access &a : *list) {
        auto it = byBuffer.find(a.buffer);
        if (it != byBuffer.end() &&
            (it->second.kernels.empty() || it->second.kernels.back() != static_cast<int>(k)))
          it->second.kernels.push_back(static_cast<int>(k));
      }
  for (auto &[buffer, ab] : byBuffer) {
    ab.writers.erase(std::unique(ab.writers.begin(), ab.writers.end()), ab.writers.end());
    ab.bytes = bytes.empty() ? prog.layouts[buffer].range.end : bytes[buffer];
    ab.firstWave = ab.lastWave = d.asap[ab.kernels.front()];
    for (int k : ab.kernels) {
      ab.firstWave = std::min(ab.firstWave, d.asap[k]);
      ab.lastWave = std::max(ab.lastWave, d.asap[k]);
    }
  }
  for (auto &[buffer, ab] : byBuffer)
    m.buffers.push_back(ab);

  int waves = 0;
  for (int a : d.asap)
    waves = std::max(waves, a + 1);

  // First fit, largest first, against every placed buffer it may not share bytes with.
  std::vector<int> order(m.buffers.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return m.buffers[a].bytes > m.buffers[b].bytes; });
  std::vector<int> placed;
  for (int i : order) {
    ArenaBuffer &b = m.buffers[i];
    // `placed` is kept sorted by offset, so the first gap that fits is found in one sweep.
    int64_t at = 0;
    for (int j : placed) {
      const ArenaBuffer &p = m.buffers[j];
      if (at + b.bytes <= p.offset)
        break;
      if (!(b.lastWave < p.firstWave || p.lastWave < b.firstWave))
        at = std::max(at, alignUp(p.offset + p.bytes));
    }
    b.offset = at;
    m.arenaBytes = std::max(m.arenaBytes, at + b.bytes);
    auto pos = std::upper_bound(placed.begin(), placed.end(), at,
                                [&](int64_t off, int j) { return off < m.buffers[j].offset; });
    placed.insert(pos, i);
  }

  for (int w = 0; w < waves; ++w) {
    int64_t live = 0;
    for (const ArenaBuffer &b : m.buffers)
      if (b.firstWave <= w && w <= b.lastWave)
        live += b.bytes;
    m.lowerBoundBytes = std::max(m.lowerBoundBytes, live);
  }
  return m;
}

void addArenaHazards(KernelProgram &prog, MemoryPlan &m) {
  // Kernels in wave order first: hazards are read in program order, and bytes shared by
  // buffers of different waves must be ordered the way the waves run. Kernels that
  // conflict already sit in increasing waves, so no earlier hazard changes direction.
  size_t n = prog.kernels.size();
  std::vector<int> order(n), newIndex(n);
  for (size_t k = 0; k < n; ++k)
    order[k] = static_cast<int>(k);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return prog.deps.asap[a] < prog.deps.asap[b]; });
  std::vector<KernelInfo> kernels;
  for (size_t i = 0; i < n; ++i) {
    newIndex[order[i]] = static_cast<int>(i);
    kernels.push_back(std::move(prog.kernels[order[i]]));
  }
  prog.kernels = std::move(kernels);
  for (ArenaBuffer &b : m.buffers)
    for (std::vector<int> *list : {&b.kernels, &b.writers}) {
      for (int &k : *list)
        k = newIndex[k];
      std::sort(list->begin(), list->end());
    }

  int arena = static_cast<int>(prog.valueNames.size());
  prog.valueNames.push_back("%arena");
  prog.callerOwned.push_back(true);
  for (const ArenaBuffer &b : m.buffers) {
    ByteRange r{b.offset, b.offset + b.bytes};
    for (int k : b.kernels) {
      Accesses &a = prog.kernels[k].accesses;
      bool writes = std::binary_search(b.writers.begin(), b.writers.end(), k);
      (writes ? a.writes : a.reads).push_back({arena, r});
    }
  }
  analyzeKernelDependences(prog);
}

Status checkMemoryPlan(const KernelProgram &prog, const MemoryPlan &m) {
  Reachability hb(prog.deps);
  // Pairs that overlap in the arena, by a sweep over offsets.
  std::vector<int> byOffset(m.buffers.size()), active;
  for (size_t i = 0; i < byOffset.size(); ++i)
    byOffset[i] = static_cast<int>(i);
  std::sort(byOffset.begin(), byOffset.end(),
            [&](int x, int y) { return m.buffers[x].offset < m.buffers[y].offset; });
  for (int i : byOffset) {
    const ArenaBuffer &a = m.buffers[i];
    if (a.bytes <= 0)
      continue;
    std::erase_if(active,
                  [&](int j) { return m.buffers[j].offset + m.buffers[j].bytes <= a.offset; });
    for (int j : active)
      if (!mayShare(a, m.buffers[j], hb))
        return makeError("memory: " + prog.valueNames[a.buffer] + " and " +
                         prog.valueNames[m.buffers[j].buffer] +
                         " share arena bytes but their kernels may run at the same time");
    active.push_back(i);
  }
  return Status::ok();
}

} // namespace kiln::passes
