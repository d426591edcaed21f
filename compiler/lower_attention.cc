// The decode-attention template, in the manner of flash-decoding: o = softmax(f(q . K)) . V
// for one query row per batch index (a head), f pointwise on the scores (a scale, a
// mask), with the output's pointwise epilogue. The keys split into chunks of C, and a
// workgroup takes one chunk of one batch index:
//  1. the chunk's scores: T invocations per key, each over VK consecutive elements of
//     the head dimension (16 bytes of a key), their sums met by shuffles, then f; the
//     values wait in shared memory (keys past the last as -inf);
//  2. their maximum m over the workgroup, and the sum l of exp(x - m);
//  3. the sum of exp(x - m) times each row of V: U invocations per row, VV consecutive
//     elements each, R = 256 / U rows at once, the row groups' sums meeting in shared
//     memory. V's loads come first in the kernel, so that they travel while the scores
//     are computed;
//  4. the chunk's sums, m and l go to the kernel's partial buffer, and the workgroup
//     counts itself in (an atomic add, as a split GEMV does). The last of a batch index's
//     workgroups to count rescales each chunk's sums by exp(m_c - M), M the largest m_c,
//     adds them in chunk order (the same result on every run), divides by the rescaled
//     sum of the l_c, sets the count back to zero and runs the epilogue.
// Neither the scores nor the probabilities reach memory. A chunk whose values are all
// -inf (masked keys) adds nothing, so that a row masked everywhere gives NaN, as the
// reference's softmax does; a NaN or +inf score makes its row NaN, as there.
#include <algorithm>
#include <limits>
#include <utility>

#include "compiler/templates.h"
#include "ir/verifier.h"
#include "passes/cost_model.h"

namespace kiln::compiler {

namespace {

using ir::Node;
using ir::Op;

// Keys a workgroup takes (more where a pass of 256 invocations covers more): a KV cache
// of 1024 over 32 heads gives 512 workgroups, about four per multiprocessor of an H100
// or H200.
constexpr int64_t kChunkKeys = 64;
// Bytes of a key's or a value's row an invocation reads at once: one 128-bit access.
constexpr int64_t kAccessBytes = 16;
// Chunks whose partial sums the last workgroup loads at once, per element.
constexpr int64_t kCombineUnroll = 8;
// The kernel's shared arrays.
enum Shared : int { kReduce, kKeys, kRows, kCount, kScales };

class AttentionLowering {
public:
  AttentionLowering(ElementLowering &el, int scores, int softmax, int output)
      : el_(el), b_(el.b()), g_(el.graph()), scores_(scores), softmax_(softmax), output_(output) {}

  Status run(const KernelStores &stores, const AddScratch &scratch, runtime::ExecKernel &exec) {
    if (Status s = check(stores); s.failed())
      return s;
    plan();
    const ir::Dim &len = keys();
    int64_t batches = 1;
    for (const ir::Dim &d : batch_)
      batches *= d.max(g_.dims);
    if (len.max(g_.dims) > passes::kMaxAttentionKeys)
      return makeError("an attention over more than " + std::to_string(passes::kMaxAttentionKeys) +
                       " keys (%" + g_.nodes[scores_].name + ")");
    maxChunks_ = (len.max(g_.dims) + chunk_ - 1) / chunk_;
    int64_t partials = batches * maxChunks_ * (dv_ + 2);
    if (partials > INT32_MAX)
      return makeError("more than 2^31-1 partial sums for the keys of %" + g_.nodes[scores_].name);
    el_.kernel().shared = {{MemType::F32, static_cast<int>(2 * kWorkgroupSize)},
                           {MemType::F32, static_cast<int>(chunk_)},
                           {MemType::F32, static_cast<int>(rowGroups_ * rowLanes_ * vv_)},
                           {MemType::I32, 1},
                           {MemType::F32, static_cast<int>(maxChunks_)}};
    partials_ = scratch(g_.nodes[output_].name + "_partials",
                        {ir::DType::F32, {ir::Dim::of(partials)}}, runtime::BufferRole::Temp);
    counters_ = scratch(g_.nodes[output_].name + "_counters",
                        {ir::DType::I32, {ir::Dim::of(batches)}}, runtime::BufferRole::Zeroed);
    origin();
    std::vector<std::vector<int>> values = valueRows();
    scoresToShared();
    int m = statistics();
    combine(stores, m, weightedRows(values));
    // Workgroups enough for every chunk of every batch index: ceil(B (L + C - 1) / C) of
    // 256 grid points is at least B ceil(L / C).
    exec.grid = batch_;
    exec.grid.push_back(ir::Dim{len.offset + chunk_ - 1, len.sym});
    exec.grid.push_back(ir::Dim::of(kWorkgroupSize / chunk_));
    return Status::ok();
  }

private:
  int iop(KOp op, std::vector<int> args) { return el_.iop(op, std::move(args)); }
  int fop(KOp op, std::vector<int> args) { return el_.fop(op, std::move(args)); }
  int c(int64_t v) { return b_.constI(v); }
  int lt(int a, int b) { return b_.op(KOp::ILt, KType::Bool, {a, b}); }
  int select(KType t, int cond, int a, int b) { return b_.op(KOp::Select, t, {cond, a, b}); }
  // `v`, or zero where `inside` (-1: always inside) does not hold.
  int masked(int v, int inside) { return inside < 0 ? v : select(KType::F32, inside, v, el_.f(0)); }
  int both(int a, int b) { return a < 0 ? b : b < 0 ? a : b_.op(KOp::And, KType::Bool, {a, b}); }
  const Node &node(int id) const { return g_.nodes[id]; }
  const ir::Dim &keys() const { return g_.typeOf(scores_).shape.back(); }

  Status check(const KernelStores &stores) {
    const Node &s = node(scores_), &p = node(softmax_), &o = node(output_);
    const ir::Shape &ss = s.type.shape, &os = o.type.shape;
    int rank = static_cast<int>(ss.size());
    std::string what = "%" + s.name + ", %" + p.name + " and %" + o.name;
    auto one = [](const ir::Dim &d) { return d.isStatic() && d.offset == 1; };
    auto headDim = [](const ir::Dim &d) {
      return d.isStatic() && d.offset >= 1 && d.offset <= passes::kMaxAttentionHeadDim;
    };
    if (p.op != Op::Softmax || ir::normalizeAxis(p.attrInt("axis"), rank) != rank - 1 ||
        o.operands[0] != softmax_ || !el_.dependsOn(p.operands[0], scores_) ||
        s.attrBool("transpose_a") || o.attrBool("transpose_a") || p.type.shape != ss ||
        os.size() != ss.size() || !std::equal(ss.begin(), ss.end() - 1, os.begin()) ||
        !one(ss[rank - 2]))
      return makeError(what + " share a kernel but are not an attention of one query row");
    d_ = g_.typeOf(s.operands[0]).shape.back().offset;
    dv_ = os.back().offset;
    if (!headDim(g_.typeOf(s.operands[0]).shape.back()) || !headDim(os.back()))
      return makeError(what + ": an attention's rows are static and at most " +
                       std::to_string(passes::kMaxAttentionHeadDim) + " long");
    for (auto [id, buffer] : stores)
      if (!el_.dependsOn(id, output_) || !sameSize(el_.storedShape(id), os))
        return makeError("%" + node(id).name + " is not one value per element of %" + o.name);
    batch_.assign(ss.begin(), ss.end() - 2);
    return Status::ok();
  }

  // Lanes per key and per row of V, VK and VV (16 bytes of each), and the chunk's keys.
  void plan() {
    auto vector = [&](int id, int64_t extent) {
      int64_t v = kAccessBytes / ir::dtypeBytes(g_.typeOf(id).dtype);
      while (v > extent)
        v /= 2;
      return v;
    };
    vk_ = vector(node(scores_).operands[1], d_);
    keyLanes_ = nextPow2((d_ + vk_ - 1) / vk_);
    keysPerPass_ = kWorkgroupSize / keyLanes_;
    chunk_ = std::max(kChunkKeys, keysPerPass_);
    vv_ = vector(node(output_).operands[1], dv_);
    rowLanes_ = nextPow2((dv_ + vv_ - 1) / vv_);
    rowGroups_ = kWorkgroupSize / rowLanes_;
  }

  // The workgroup's batch index and chunk (workgroups past the last batch index compute
  // its last chunk again and store nothing, so that every invocation reaches every
  // barrier).
  void origin() {
    lane_ = b_.localId();
    length_ = el_.extent(keys());
    chunks_ = iop(KOp::IDiv, {iop(KOp::IAdd, {length_, c(chunk_ - 1)}), c(chunk_)});
    int g = b_.groupId();
    int bi = iop(KOp::IDiv, {g, chunks_});
    chunkId_ = iop(KOp::IRem, {g, chunks_});
    int batches = el_.elements(batch_);
    valid_ = lt(bi, batches);
    bi_ = select(KType::I32, valid_, bi, iop(KOp::ISub, {batches, c(1)}));
    batchCoords_ = el_.delinearize(bi_, batch_);
    first_ = iop(KOp::IMul, {chunkId_, c(chunk_)});
  }

  // Key `offset` of the chunk (clamped to the last key) and whether it exists (-1:
  // always, where the keys are a static multiple of the chunk).
  std::pair<int, int> key(int offset) {
    int j = iop(KOp::IAdd, {first_, offset});
    const ir::Dim &len = keys();
    if (len.isStatic() && len.offset % chunk_ == 0)
      return {j, -1};
    int inside = lt(j, length_);
    return {select(KType::I32, inside, j, iop(KOp::ISub, {length_, c(1)})), inside};
  }
  // Element i of the `vec` consecutive elements from `first` of a row of `extent` read by
  // `lanes` invocations: its index (clamped into the row) and whether it lies inside
  // (-1: always). Where the row is a multiple of `vec`, one test covers the elements, and
  // the clamp keeps the index aligned for vector loads.
  std::pair<int, int> along(int first, int64_t i, int64_t lanes, int64_t vec, int64_t extent) {
    auto plus = [&](int v) { return i == 0 ? v : iop(KOp::IAdd, {v, c(i)}); };
    if (lanes * vec == extent)
      return {plus(first), -1};
    if (extent % vec == 0) {
      int inside = lt(first, c(extent));
      return {plus(select(KType::I32, inside, first, c(extent - vec))), inside};
    }
    int d = plus(first);
    int inside = lt(d, c(extent));
    return {select(KType::I32, inside, d, c(extent - 1)), inside};
  }

  // Phase 3's loads: rows r * R + lane / U of the chunk, VV consecutive elements from
  // (lane % U) * VV, zero past the last key or element.
  std::vector<std::vector<int>> valueRows() {
    const Node &o = node(output_);
    int v = o.operands[1];
    bool tb = o.attrBool("transpose_b");
    int group = iop(KOp::IDiv, {lane_, c(rowLanes_)});
    int first = iop(KOp::IMul, {iop(KOp::IRem, {lane_, c(rowLanes_)}), c(vv_)});
    std::vector<std::vector<int>> rows;
    for (int64_t r = 0; r < rowsPerInvocation(); ++r) {
      auto [offset, used] = rowOffset(r, group);
      auto [j, inside] = key(offset);
      int keep = both(used, inside);
      std::vector<int> row;
      for (int64_t i = 0; i < vv_; ++i) {
        auto [d, in] = along(first, i, rowLanes_, vv_, dv_);
        row.push_back(masked(el_.valueAt(v, matmulOperandCoords(el_, v, tb, batchCoords_, j, d)),
                             both(keep, in)));
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }
  int64_t rowsPerInvocation() const { return std::max<int64_t>(1, chunk_ / rowGroups_); }
  // The chunk's key that row group `group` takes in its step r, clamped into the chunk,
  // and whether the chunk has it (-1: always).
  std::pair<int, int> rowOffset(int64_t r, int group) {
    int offset = iop(KOp::IAdd, {c(r * rowGroups_), group});
    if (rowGroups_ <= chunk_)
      return {offset, -1};
    int used = lt(offset, c(chunk_));
    return {select(KType::I32, used, offset, c(chunk_ - 1)), used};
  }

  // Phase 1: f of each key's score into kKeys (-inf past the last key).
  void scoresToShared() {
    const Node &s = node(scores_);
    int q = s.operands[0], k = s.operands[1];
    bool tb = s.attrBool("transpose_b");
    int t = iop(KOp::IRem, {lane_, c(keyLanes_)});
    int slot = iop(KOp::IDiv, {lane_, c(keyLanes_)});
    int first = iop(KOp::IMul, {t, c(vk_)});
    std::vector<int> qs, ds, ins;
    for (int64_t i = 0; i < vk_; ++i) {
      auto [d, in] = along(first, i, keyLanes_, vk_, d_);
      qs.push_back(
          masked(el_.valueAt(q, matmulOperandCoords(el_, q, false, batchCoords_, c(0), d)), in));
      ds.push_back(d);
      ins.push_back(in);
    }
    // Every pass's loads first, then the shuffles.
    std::vector<int> partial;
    std::vector<std::pair<int, int>> keyOf;
    for (int64_t p = 0; p < chunk_ / keysPerPass_; ++p) {
      keyOf.push_back(key(iop(KOp::IAdd, {c(p * keysPerPass_), slot})));
      int sum = -1;
      for (int64_t i = 0; i < vk_; ++i) {
        int kv = masked(el_.valueAt(k, matmulOperandCoords(el_, k, tb, batchCoords_, ds[i],
                                                           keyOf.back().first)),
                        ins[i]);
        int product = fop(KOp::FMul, {qs[i], kv});
        sum = sum < 0 ? product : fop(KOp::FAdd, {sum, product});
      }
      partial.push_back(sum);
    }
    const Node &sm = node(softmax_);
    for (size_t p = 0; p < partial.size(); ++p) {
      int sum = combineLanes(el_, KOp::FAdd, partial[p], keyLanes_, t, kReduce, nextRegion());
      b_.ifBegin(lt(t, c(1)));
      el_.pushScope();
      el_.setValue(scores_, sum);
      std::vector<int> at = batchCoords_;
      at.push_back(c(0));
      at.push_back(keyOf[p].first);
      int x = el_.valueAt(sm.operands[0], at);
      if (keyOf[p].second >= 0)
        x = select(KType::F32, keyOf[p].second, x, el_.f(-std::numeric_limits<float>::infinity()));
      b_.sharedStore(kKeys, iop(KOp::IAdd, {c(static_cast<int64_t>(p) * keysPerPass_), slot}), x);
      el_.popScope();
      b_.ifEnd();
    }
    b_.barrier();
  }

  // Phase 2: the chunk's maximum (returned) and, in kKeys, exp(x - m) for each key
  // (zero for keys of -inf, and for every key where all are -inf); their sum in sum_.
  int statistics() {
    constexpr float inf = std::numeric_limits<float>::infinity();
    int x = el_.f(-inf), mine = -1;
    if (chunk_ < kWorkgroupSize) {
      mine = lt(lane_, c(chunk_));
      x = select(KType::F32, mine,
                 b_.sharedLoad(kKeys, KType::F32, select(KType::I32, mine, lane_, c(0))), x);
    } else {
      x = b_.sharedLoad(kKeys, KType::F32, lane_);
    }
    int m = combineLanes(el_, KOp::FMax, x, kWorkgroupSize, lane_, kReduce, nextRegion());
    int empty = b_.op(KOp::FEq, KType::Bool, {m, el_.f(-inf)});
    int shift = select(KType::F32, empty, el_.f(0), m);
    int e = fop(ElementLowering::expOp(node(softmax_).type.dtype), {fop(KOp::FSub, {x, shift})});
    if (mine >= 0)
      b_.ifBegin(mine);
    b_.sharedStore(kKeys, lane_, e);
    if (mine >= 0)
      b_.ifEnd();
    sum_ = combineLanes(el_, KOp::FAdd, e, kWorkgroupSize, lane_, kReduce, nextRegion());
    b_.barrier(); // the exps' stores before phase 3 reads them
    return m;
  }
  int nextRegion() { return static_cast<int>(regions_++ % 2 * kWorkgroupSize); }

  // Phase 3: the chunk's weighted sum of V's rows, element `lane` (lanes past the row
  // hold a copy of its last element).
  int weightedRows(const std::vector<std::vector<int>> &values) {
    int group = iop(KOp::IDiv, {lane_, c(rowLanes_)});
    int first = iop(KOp::IMul, {iop(KOp::IRem, {lane_, c(rowLanes_)}), c(vv_)});
    std::vector<int> acc(vv_, -1);
    for (int64_t r = 0; r < rowsPerInvocation(); ++r) {
      int e = b_.sharedLoad(kKeys, KType::F32, rowOffset(r, group).first);
      for (int64_t i = 0; i < vv_; ++i) {
        int product = fop(KOp::FMul, {e, values[r][i]});
        acc[i] = acc[i] < 0 ? product : fop(KOp::FAdd, {acc[i], product});
      }
    }
    int width = static_cast<int>(rowLanes_ * vv_);
    for (int64_t i = 0; i < vv_; ++i)
      b_.sharedStore(kRows,
                     iop(KOp::IAdd, {iop(KOp::IMul, {group, c(width)}),
                                     i == 0 ? first : iop(KOp::IAdd, {first, c(i)})}),
                     acc[i]);
    b_.barrier();
    int d = select(KType::I32, lt(lane_, c(dv_)), lane_, c(dv_ - 1));
    int sum = b_.varNew(KType::F32, b_.sharedLoad(kRows, KType::F32, d));
    int r = b_.loopBegin(c(1), c(rowGroups_), c(1));
    int other =
        b_.sharedLoad(kRows, KType::F32, iop(KOp::IAdd, {iop(KOp::IMul, {r, c(width)}), d}));
    b_.varSet(sum, fop(KOp::FAdd, {b_.varGet(KType::F32, sum), other}));
    b_.loopEnd();
    return b_.varGet(KType::F32, sum);
  }

  // Phase 4 (see the file comment).
  void combine(const KernelStores &stores, int m, int sums) {
    auto at = [&](int chunk, int64_t e) {
      int row = iop(KOp::IAdd, {iop(KOp::IMul, {bi_, c(maxChunks_)}), chunk});
      return iop(KOp::IAdd, {iop(KOp::IMul, {row, c(dv_ + 2)}), c(e)});
    };
    int inRow = lt(lane_, c(dv_));
    b_.ifBegin(valid_);
    b_.ifBegin(inRow);
    b_.store(partials_, iop(KOp::IAdd, {at(chunkId_, 0), lane_}), sums);
    b_.ifEnd();
    b_.ifBegin(lt(lane_, c(1)));
    b_.store(partials_, at(chunkId_, dv_), m);
    b_.store(partials_, at(chunkId_, dv_ + 1), sum_);
    b_.ifEnd();
    b_.fence();
    b_.barrier();
    b_.ifBegin(lt(lane_, c(1)));
    b_.sharedStore(kCount, c(0), b_.atomicAdd(counters_, bi_, c(1)));
    b_.ifEnd();
    b_.barrier();
    int counted = b_.sharedLoad(kCount, KType::I32, c(0));
    b_.ifBegin(b_.op(KOp::Not, KType::Bool, {lt(counted, iop(KOp::ISub, {chunks_, c(1)}))}));
    b_.fence();
    // The chunks' largest maximum, and the rescaled sum of their exps, the invocations
    // taking chunks lane, lane + 256, ...; each chunk's scale waits in kScales.
    constexpr float inf = std::numeric_limits<float>::infinity();
    KOp exp = ElementLowering::expOp(node(softmax_).type.dtype);
    int top = b_.varNew(KType::F32, el_.f(-inf));
    int ch = b_.loopBegin(lane_, chunks_, c(kWorkgroupSize));
    b_.varSet(top, fop(KOp::FMax,
                       {b_.varGet(KType::F32, top), b_.load(partials_, KType::F32, at(ch, dv_))}));
    b_.loopEnd();
    int best = combineLanes(el_, KOp::FMax, b_.varGet(KType::F32, top), kWorkgroupSize, lane_,
                            kReduce, nextRegion());
    int total = b_.varNew(KType::F32, el_.f(0));
    ch = b_.loopBegin(lane_, chunks_, c(kWorkgroupSize));
    int scale = fop(exp, {fop(KOp::FSub, {b_.load(partials_, KType::F32, at(ch, dv_)), best})});
    b_.sharedStore(kScales, ch, scale);
    b_.varSet(
        total,
        fop(KOp::FAdd, {b_.varGet(KType::F32, total),
                        fop(KOp::FMul, {b_.load(partials_, KType::F32, at(ch, dv_ + 1)), scale})}));
    b_.loopEnd();
    int sum = combineLanes(el_, KOp::FAdd, b_.varGet(KType::F32, total), kWorkgroupSize, lane_,
                           kReduce, nextRegion());
    b_.barrier(); // the scales' stores before their reads
    // Each element's rescaled sums, kCombineUnroll chunks a step (their loads in flight
    // together), in chunk order.
    b_.ifBegin(inRow);
    int weighted = b_.varNew(KType::F32, el_.f(0));
    int c0 = b_.loopBegin(c(0), chunks_, c(kCombineUnroll));
    el_.pushScope();
    std::vector<int> terms;
    for (int64_t u = 0; u < kCombineUnroll; ++u) {
      int cu = u == 0 ? c0 : iop(KOp::IAdd, {c0, c(u)});
      int inside = u == 0 ? -1 : lt(cu, chunks_);
      if (inside >= 0)
        cu = select(KType::I32, inside, cu, c0);
      int term = fop(KOp::FMul, {b_.load(partials_, KType::F32, iop(KOp::IAdd, {at(cu, 0), lane_})),
                                 b_.sharedLoad(kScales, KType::F32, cu)});
      terms.push_back(masked(term, inside));
    }
    int acc = b_.varGet(KType::F32, weighted);
    for (int t : terms)
      acc = fop(KOp::FAdd, {acc, t});
    b_.varSet(weighted, acc);
    el_.popScope();
    b_.loopEnd();
    // One division a row, as the row template's softmax takes.
    int o = fop(KOp::FMul, {b_.varGet(KType::F32, weighted), fop(KOp::FDiv, {el_.f(1), sum})});
    el_.pushScope();
    el_.setValue(output_, o);
    int index = iop(KOp::IAdd, {iop(KOp::IMul, {bi_, c(dv_)}), lane_});
    for (auto [id, buffer] : stores)
      el_.store(buffer, index, id, el_.valueAt(id, el_.delinearize(index, el_.storedShape(id))));
    el_.popScope();
    b_.ifEnd();
    b_.ifBegin(lt(lane_, c(1)));
    b_.store(counters_, bi_, c(0));
    b_.ifEnd();
    b_.ifEnd();
    b_.ifEnd();
  }

  ElementLowering &el_;
  KernelBuilder &b_;
  const ir::Graph &g_;
  int scores_, softmax_, output_;
  ir::Shape batch_;
  int64_t d_ = 0, dv_ = 0; // the rows of q and K, and of V
  int64_t vk_ = 1, keyLanes_ = 1, keysPerPass_ = 1, chunk_ = 1;
  int64_t vv_ = 1, rowLanes_ = 1, rowGroups_ = 1;
  int64_t maxChunks_ = 1, regions_ = 0;
  int partials_ = -1, counters_ = -1;
  int lane_ = -1, length_ = -1, chunks_ = -1, chunkId_ = -1, valid_ = -1, bi_ = -1, first_ = -1;
  int sum_ = -1;
  std::vector<int> batchCoords_;
};

} // namespace

Status lowerAttentionKernel(ElementLowering &el, const KernelStores &stores, int scores,
                            int softmax, int output, const AddScratch &scratch,
                            runtime::ExecKernel &exec) {
  return AttentionLowering(el, scores, softmax, output).run(stores, scratch, exec);
}

} // namespace kiln::compiler
