// The contraction template: sibling matmuls that read one A operand (Q, K and V; gate
// and up) and their epilogue. A workgroup computes a TM x TN tile of every sibling's
// result for one batch index: its 256 invocations split into KS slices of K, RG groups
// of RM rows and CG groups of VN consecutive columns, each accumulating RM x VN sums in
// registers. The slices' partial sums meet by subgroup shuffles (across subgroups, in
// shared memory), which leaves each sibling's tile in shared memory; the epilogue then
// computes and stores the kernel's values element by element, reading the tiles (a rope
// reads its pair partner from the same tile: interleaved pairs sit side by side, and for
// a half-mode rope a tile takes half its columns from each half of a rope row).
//
// Two shapes of work: for few rows (decode: M <= 8) the invocations spread over K and
// read B along its contiguous axis (VN consecutive columns when N is contiguous, VK
// consecutive k of VN columns when K is), which is the GEMV the memory bus sets the
// pace of; tiles narrow until there are enough workgroups (over N-contiguous B, where
// that leaves too few, they widen instead and K splits across workgroups, the last of a
// tile's workgroups adding their sums: see finish), and siblings that no stored value
// mixes get workgroups of their own. For many rows each invocation holds a register tile of
// RM x VN sums over the whole of K.
//
// Where the targets have matrix units (LowerOptions::matrixUnits) and both factors are
// f16, a workgroup of eight 32-wide subgroups computes a 128 x 128 or 128 x 256 tile
// instead, on tensor cores: each step of K, each subgroup multiplies 16 x 16 fragments of
// a 128 x 32 slab of A and a 32-deep slab of B in shared memory (B in its own layout:
// rows of k when N is contiguous, rows of n when K is) into its 64 x 32 or 64 x 64 of
// the tile, its sums held in matrix registers, while later steps' slabs travel to the
// other stages of the shared arrays (see matrixSums). Siblings that a stored value mixes
// (gate and up, at most kMatMaxMixed) share each slab of A and take 128 columns each;
// others get workgroups of their own. Tiles too few to fill a GPU split K across
// workgroups (see splitMatrixK and matrixEpilogue). The epilogue then passes each sum
// through shared memory a fragment at a time and stores the kernel's values element by
// element, as above. A half-mode rope (its pairs lie outside a fragment) and more mixed
// siblings keep the SIMT tile.
#include <algorithm>
#include <functional>
#include <numeric>
#include <set>

#include "compiler/templates.h"
#include "ir/verifier.h"

namespace kiln::compiler {

namespace {

using ir::Node;
using ir::Op;

// Shared memory the template may use: the least any target kiln runs on offers.
constexpr int64_t kMaxSharedFloats = 32 * 1024 / 4;
// Rows up to which a kernel takes the GEMV shape.
constexpr int64_t kMaxGemvRows = 8;
// Workgroups a GEMV aims for at least: about four per multiprocessor of an H100 or H200
// (132), which keeps enough loads in flight to stream B at full bandwidth. Over
// N-contiguous B, a tile's columns are its bytes per row of B: two per multiprocessor,
// so that a 4096 x 11008 f16 B is read 64 bytes a row (31.2 us, against 37.0 for 32
// bytes at twice the workgroups; 128 workgroups of 64 bytes took 2.5 times as long as
// 256 of 32: ncu, H200).
constexpr int64_t kTargetWorkgroups = 512;
constexpr int64_t kTargetWorkgroupsAlongN = 256;
// Where that leaves an N-contiguous GEMV short of this many workgroups (about five per
// multiprocessor of an H100 or H200), it splits K across workgroups instead: resident
// workgroups, not bytes per row of B, set its pace. A 4096 x 11008 f16 B took 29.7 us
// in 344 workgroups of 32 columns, 25.2 us in 688 of 256 columns over a sixteenth of K
// each, and 36 to 41 us whenever the split left 172 or 344 workgroups (ncu, H200, with
// the split written as a batched GEMV and a sum). Its tiles take up to kSplitColumns
// columns (512 bytes of an f16 row) and kSplitUnroll loads of B in flight per
// invocation (half as many where K is too short for that many splits).
constexpr int64_t kTargetSplitWorkgroups = 640;
constexpr int64_t kSplitColumns = 256;
constexpr int64_t kSplitUnroll = 16;
// The tensor-core tile: rows a workgroup computes, k per step, and the halves by which
// the shared slabs' rows are padded (16 bytes: a fragment's eight-row loads then touch
// every bank once). A tile is 128 or 256 columns wide (see lowerOnMatrixUnits); with
// three stages of slabs and the epilogue's scratch it takes up to 98 KB of shared
// memory, which every GPU with tensor cores since sm_80 offers (kMaxSharedFloats is for
// the SIMT tiles, which run everywhere).
constexpr int64_t kMatTileM = 128, kMatTileK = 32, kMatPad = 8;
constexpr int64_t kMat = 16;         // a fragment's side
constexpr int64_t kMatSubgroup = 32; // invocations per subgroup wherever matrix units are
constexpr int64_t kMatWarpsN = 4;    // subgroups across the tile's columns (2 down its rows)
constexpr int64_t kMatFragsM = 4;    // fragments of a subgroup down the rows (64 rows)
// Siblings that a stored value mixes (gate and up) that one workgroup computes together
// at most; each takes its own sums, so that 128 columns of two siblings weigh in
// registers what 256 of one do.
constexpr int64_t kMatMaxMixed = 2;
// Shared memory a tensor-core workgroup takes at most: the least that GPUs with tensor
// cores since sm_80 grant one (99 KB on sm_86 and sm_89).
constexpr int64_t kMatMaxSharedBytes = 99 * 1024;
// Tiles a kernel needs at least to take 256 columns a tile: about one per multiprocessor
// of an H100 or H200 (132), since each such workgroup fills one.
constexpr int64_t kMinWideTiles = 128;
// Tiles below which a tensor-core kernel splits K across workgroups: about one per
// multiprocessor of an H100 or H200 (132), where one workgroup each leaves every
// multiprocessor with eight subgroups to hide its latencies. The splits bring the
// workgroups to about kMatSplitWorkgroups (four per multiprocessor), each summing at
// least kMatMinSplitSteps steps of K.
constexpr int64_t kMatSplitBelow = 160;
constexpr int64_t kMatSplitWorkgroups = 512;
constexpr int64_t kMatMinSplitSteps = 8;
// The warpgroup tile (LowerOptions::warpgroupMatrix): k per step, stages of slabs, and the
// shared memory a workgroup may take on sm_90 (227 KB). Each of the two warpgroups
// multiplies 64 rows of A by 128 columns of B a product.
constexpr int64_t kWgTileK = 64, kWgStages = 4, kWgColumns = 128;
constexpr int64_t kWgMaxSharedBytes = 227 * 1024;
// Invocations in a subgroup at most (Vulkan's limit; 32 on NVIDIA).
constexpr int64_t kMaxSubgroupSize = 128;
// Columns (rows of B) an invocation of a GEMV over K-contiguous B sums at once, at most.
constexpr int64_t kMaxColumnsPerInvocation = 4;

// The axis of node `id`'s shape along which consecutive elements sit next to each other
// in memory, or -1 when unknown. It only steers the tile's shape; correctness never
// depends on it.
int unitStrideAxis(const ir::Graph &g, int id) {
  const Node &n = g.nodes[id];
  int rank = n.type.rank();
  if (ir::opCategory(n.op) != ir::Category::Layout)
    return rank - 1;
  int xr = g.typeOf(n.operands[0]).rank();
  int u = unitStrideAxis(g, n.operands[0]);
  if (u < 0)
    return -1;
  switch (n.op) {
  case Op::Slice:
    return u;
  case Op::Permute: {
    const std::vector<int64_t> &perm = n.attrInts("perm");
    for (size_t i = 0; i < perm.size(); ++i)
      if (perm[i] == u)
        return static_cast<int>(i);
    return -1;
  }
  case Op::Broadcast:
    return u + rank - xr;
  case Op::Reshape:
    return u == xr - 1 ? rank - 1 : -1;
  case Op::View: {
    const std::vector<int64_t> &strides = n.attrInts("strides");
    for (size_t i = 0; u == xr - 1 && i < strides.size(); ++i)
      if (strides[i] == 1)
        return static_cast<int>(i);
    return -1;
  }
  default:
    break;
  }
  return -1;
}

// Whether chunks of 8 elements of node `id` along its unit-stride axis `u`
// (unitStrideAxis), each starting at a multiple of 8, are each 8 consecutive elements of
// the buffer that holds it through views (ElementLowering::viewedBuffer), 16-byte
// aligned in f16: at every step down the views the unit-stride axis keeps a static
// extent that is a multiple of 8, a slice along it starts at a multiple of 8, and a
// broadcast does not repeat it.
bool alignedChunks(const ir::Graph &g, int id, int u) {
  for (;;) {
    const Node &n = g.nodes[id];
    if (u < 0 || !n.type.shape[u].isStatic() || n.type.shape[u].offset % 8 != 0)
      return false;
    if (ir::opCategory(n.op) != ir::Category::Layout)
      return true;
    int x = n.operands[0];
    int xr = g.typeOf(x).rank();
    switch (n.op) {
    case Op::Slice: {
      const ir::Dim &start = n.attrDim("start");
      if (ir::normalizeAxis(n.attrInt("axis"), xr) == u &&
          (!start.isStatic() || start.offset % 8 != 0))
        return false;
      break;
    }
    case Op::Permute:
      u = static_cast<int>(n.attrInts("perm")[u]);
      break;
    case Op::Broadcast:
      u -= n.type.rank() - xr;
      break;
    case Op::Reshape:
      u = xr - 1;
      break;
    default: // an explicit view
      return false;
    }
    id = x;
  }
}

class ContractionLowering {
public:
  ContractionLowering(ElementLowering &el, std::vector<int> anchors, const LowerOptions &opts)
      : el_(el), b_(el.b()), g_(el.graph()), opts_(opts), anchors_(std::move(anchors)),
        out_(g_.typeOf(anchors_[0]).shape) {
    const Node &a0 = g_.nodes[anchors_[0]];
    int r = static_cast<int>(out_.size());
    batch_.assign(out_.begin(), out_.end() - 2);
    m_ = out_[r - 2];
    const ir::Shape &as = g_.typeOf(a0.operands[0]).shape;
    k_ = a0.attrBool("transpose_a") ? as[as.size() - 2] : as.back();
  }

  Status run(const KernelStores &stores, const AddScratch &scratch, runtime::ExecKernel &exec) {
    std::vector<int> siblingOf;
    separable_ = anchors_.size() > 1;
    for (auto [node, buffer] : stores) {
      // The sibling it holds one value per element of (the first, through the kernel's
      // nodes), and how many siblings it needs.
      int sibling = -1, needs = 0;
      for (size_t s = 0; s < anchors_.size(); ++s) {
        if (!el_.dependsOn(node, anchors_[s]))
          continue;
        ++needs;
        if (sibling < 0 && sameSize(el_.storedShape(node), g_.typeOf(anchors_[s]).shape))
          sibling = static_cast<int>(s);
      }
      if (sibling < 0)
        return makeError("%" + g_.nodes[node].name +
                         " is not one value per element of a matmul of its kernel");
      siblingOf.push_back(sibling);
      separable_ = separable_ && needs == 1;
    }
    if (Status s = plan(); s.failed())
      return s;
    if (matrixTiles()) {
      lowerOnMatrixUnits(stores, siblingOf, scratch);
      grid(exec);
      return Status::ok();
    }
    std::vector<KShared> &shared = el_.kernel().shared;
    for (size_t s = 0; s < anchors_.size(); ++s)
      shared.push_back({MemType::F32, static_cast<int>(tm_ * tn_)});
    if (ks_ > 1)
      shared.push_back({MemType::F32, static_cast<int>(ks_ * tm_ * tn_)});
    if (splits_ > 1) {
      last_ = static_cast<int>(shared.size());
      shared.push_back({MemType::F32, 1});
      int64_t tiles = tilesPerSplit();
      ir::TensorType sums{ir::DType::F32, {ir::Dim::of(tiles * splits_ * together() * tm_ * tn_)}};
      partials_ = scratch(anchor(0).name + "_partials", sums, runtime::BufferRole::Temp);
      counters_ = scratch(anchor(0).name + "_counters", {ir::DType::I32, {ir::Dim::of(tiles)}},
                          runtime::BufferRole::Zeroed);
    }
    tileOrigin();
    if (spare_)
      b_.ifBegin(valid_);
    std::vector<int> all(anchors_.size());
    std::iota(all.begin(), all.end(), 0);
    if (!perSibling_) {
      accumulate(all);
      finish(stores, siblingOf, all);
    }
    if (perSibling_)
      forEachSibling([&](int s) {
        accumulate({s});
        finish(stores, siblingOf, {s});
      });
    if (spare_)
      b_.ifEnd();
    grid(exec);
    return Status::ok();
  }

private:
  int iop(KOp op, std::vector<int> args) { return el_.iop(op, std::move(args)); }
  int c(int64_t v) { return b_.constI(v); }
  int lt(int a, int b) { return b_.op(KOp::ILt, KType::Bool, {a, b}); }
  int select(KType t, int cond, int a, int b) { return b_.op(KOp::Select, t, {cond, a, b}); }

  // Runs `body` for each sibling in a scope of its own: where each workgroup computes one
  // sibling (perSibling_), under that workgroup's own condition, so that every
  // invocation meets the barriers.
  void forEachSibling(const std::function<void(int)> &body) {
    for (int s = 0; s < static_cast<int>(anchors_.size()); ++s) {
      if (perSibling_)
        b_.ifBegin(
            b_.op(KOp::And, KType::Bool,
                  {b_.op(KOp::Not, KType::Bool, {lt(sibling_, c(s))}), lt(sibling_, c(s + 1))}));
      el_.pushScope();
      body(s);
      el_.popScope();
      if (perSibling_)
        b_.ifEnd();
    }
  }
  const Node &anchor(int s) const { return g_.nodes[anchors_[s]]; }
  // The sibling whose anchor is node `id`.
  int anchorSibling(int id) const {
    return static_cast<int>(std::find(anchors_.begin(), anchors_.end(), id) - anchors_.begin());
  }
  ir::Dim n(int s) const { return g_.typeOf(anchors_[s]).shape.back(); }

  // Chooses the tile (see the file comment).
  Status plan() {
    const Node &a0 = anchor(0);
    for (size_t s = 0; s < anchors_.size(); ++s) {
      const Node &a = anchor(static_cast<int>(s));
      ir::Shape os = g_.typeOf(anchors_[s]).shape;
      if (a.operands[0] != a0.operands[0] ||
          !std::equal(os.begin(), os.end() - 1, out_.begin(), out_.end() - 1) ||
          a.attrBool("transpose_a") != a0.attrBool("transpose_a"))
        return makeError("matmuls %" + a0.name + " and %" + a.name +
                         " share a kernel but not their rows");
      if (!n(static_cast<int>(s)).isStatic() && n(static_cast<int>(s)) != n(0))
        return makeError("sibling matmuls of different symbolic widths (%" + a.name + ")");
      if (n(static_cast<int>(s)).max(g_.dims) > n(widest_).max(g_.dims))
        widest_ = static_cast<int>(s);
    }
    // A rope in the epilogue reads its pair partner from the tile. Interleaved pairs sit
    // side by side, in any tile of even width. A half-mode rope over rows of D pairs
    // column i of a row with i + D/2, so a tile takes TN/2 columns from each half of a
    // row (halfRope_); ropes of several half widths take tiles of whole rows instead.
    int64_t align = 1;
    std::set<int64_t> halves;
    for (size_t id = 0; id < g_.nodes.size(); ++id)
      if (el_.inKernel(static_cast<int>(id)) && g_.nodes[id].op == Op::Rope) {
        int64_t d = g_.typeOf(g_.nodes[id].operands[0]).shape.back().offset;
        for (size_t s = 0; s < anchors_.size(); ++s)
          if (!n(static_cast<int>(s)).isStatic() || n(static_cast<int>(s)).offset % d != 0)
            return makeError("a rope over rows that straddle the rows of matmul %" +
                             anchor(static_cast<int>(s)).name);
        align = std::lcm(align, g_.nodes[id].attrEnum("mode") == "half" ? d : 2);
        if (g_.nodes[id].attrEnum("mode") == "half")
          halves.insert(d);
      }
    align = nextPow2(align);
    if (halves.size() == 1 && nextPow2(*halves.begin()) == *halves.begin()) {
      halfRope_ = *halves.begin();
      if (Status s = chooseTile(2);
          !s.failed() && tn_ <= halfRope_ && halfRope_ % tn_ == 0 && (tn_ / 2) % vn_ == 0)
        return s;
      halfRope_ = 0;
    }
    return chooseTile(align);
  }

  // The tile's shape, its columns a multiple of `align`.
  Status chooseTile(int64_t align) {
    const Node &a0 = anchor(0);
    rg_ = cg_ = ks_ = vn_ = vk_ = splits_ = 1;
    perSibling_ = false;
    rm_ = 1;
    const Node &b0 = g_.nodes[a0.operands[1]];
    int rb = b0.type.rank();
    bool tb = a0.attrBool("transpose_b");
    kContiguous_ = unitStrideAxis(g_, a0.operands[1]) == (tb ? rb - 1 : rb - 2);
    int64_t vec = 16 / ir::dtypeBytes(b0.type.dtype); // elements in 16 bytes
    int64_t width = n(widest_).isStatic() ? n(widest_).offset : INT64_MAX;
    gemv_ = m_.isStatic() && m_.offset <= kMaxGemvRows;
    if (gemv_) {
      rg_ = nextPow2(m_.offset);
      rm_ = 1;
      if (kContiguous_) {
        // An invocation's A chunk serves VN rows of B of each sibling in its workgroup,
        // VN growing until A's bytes are no more than B's. An f32 A (a temporary) over
        // one weight cost the L1 twice what B did: the down projection ran at 2.2 TB/s
        // with the L1 91% busy (ncu, H200).
        vk_ = vec;
        int64_t siblings = separable_ ? 1 : static_cast<int64_t>(anchors_.size());
        while (vn_ < kMaxColumnsPerInvocation && aBytes() * vk_ > 16 * vn_ * siblings)
          vn_ *= 2;
        cg_ = std::max<int64_t>(1, 16 / vn_);
      } else {
        vn_ = vec;
        cg_ = std::max<int64_t>(1, 32 / vn_);
      }
      while (cg_ * vn_ < align)
        cg_ *= 2;
      if (cg_ * rg_ > kWorkgroupSize)
        return makeError("a matmul tile of " + std::to_string(cg_ * vn_) +
                         " columns is too wide for a workgroup");
      ks_ = kWorkgroupSize / (cg_ * rg_);
      // Few k: lanes move from slices of K to columns; few columns: the other way.
      while (k_.isStatic() && ks_ > 1 && (ks_ / 2) * vk_ >= k_.offset) {
        ks_ /= 2;
        cg_ *= 2;
      }
      while (cg_ > 1 && (cg_ / 2) * vn_ >= width && (cg_ / 2) * vn_ >= align) {
        cg_ /= 2;
        ks_ *= 2;
      }
      // A GEMV's siblings take workgroups of their own (Q, K and V: three times the
      // workgroups, each reading one weight) unless a stored value needs two of them
      // (silu(gate) * up).
      perSibling_ = separable_;
      // Enough streams of B to keep every multiprocessor's memory pipe full: narrower
      // tiles (down to 16 bytes of a row of B per step) while K has room for the slices.
      int64_t minColumns = kContiguous_ ? 4 : 16;
      // Siblings that share a workgroup count once each: it streams all their weights.
      auto groups = [&] {
        int64_t g = static_cast<int64_t>(anchors_.size());
        for (const ir::Dim &d : batch_)
          g *= d.max(g_.dims);
        return g * ((width + cg_ * vn_ - 1) / (cg_ * vn_));
      };
      int64_t target = kContiguous_ ? kTargetWorkgroups : kTargetWorkgroupsAlongN;
      bool split = !kContiguous_ && splitK(width, groups);
      while (!split && n(widest_).isStatic() && groups() < target && cg_ * vn_ / 2 >= minColumns &&
             cg_ * vn_ / 2 >= align && (!k_.isStatic() || ks_ * 2 * vk_ <= k_.offset)) {
        cg_ /= 2;
        ks_ *= 2;
      }
      // Loads of B in flight per invocation: 4 (8 over N-contiguous B; where K is split,
      // splitK's) of 16 bytes.
      if (!split)
        unroll_ = kContiguous_ ? std::max<int64_t>(1, 4 / vn_) : 8;
    } else {
      vn_ = 4;
      rm_ = 4;
      cg_ = 16;
      rg_ = 16;
      while (cg_ * vn_ < align && rg_ > 1) {
        cg_ *= 2;
        rg_ /= 2;
      }
      if (cg_ * vn_ < align)
        return makeError("a matmul tile of " + std::to_string(cg_ * vn_) +
                         " columns is too narrow for its rope");
      unroll_ = 1;
      auto floats = [&] { return static_cast<int64_t>(anchors_.size()) * rg_ * rm_ * cg_ * vn_; };
      while (floats() > kMaxSharedFloats && rm_ > 1)
        rm_ /= 2;
    }
    tm_ = rg_ * rm_;
    tn_ = cg_ * vn_;
    while (unroll_ > 1 && k_.isStatic() && unroll_ * ks_ * vk_ > k_.offset)
      unroll_ /= 2;
    int64_t floats =
        static_cast<int64_t>(anchors_.size()) * tm_ * tn_ + (ks_ > 1 ? ks_ * tm_ * tn_ : 0);
    if (floats > kMaxSharedFloats)
      return makeError(std::to_string(anchors_.size()) +
                       " sibling matmuls need more shared memory than a workgroup has");
    return Status::ok();
  }

  // Whether an N-contiguous GEMV splits K across workgroups (see kTargetSplitWorkgroups):
  // where its static shape leaves too few tiles, they widen and each workgroup sums
  // kChunk_ consecutive k of its tile.
  bool splitK(int64_t width, const std::function<int64_t()> &groups) {
    if (!k_.isStatic() || !n(widest_).isStatic() || groups() >= kTargetSplitWorkgroups)
      return false;
    for (const ir::Dim &d : batch_)
      if (!d.isStatic())
        return false;
    int64_t narrowest = cg_, widest = cg_;
    while (widest * 2 * vn_ <= std::min(kSplitColumns, width) &&
           widest * 2 * rg_ <= kWorkgroupSize && (halfRope_ == 0 || widest * 2 * vn_ <= halfRope_))
      widest *= 2;
    // The widest tile, and then the most loads in flight, whose splits of at least two
    // steps reach the target. With fewer workgroups a split lost to the tile it
    // replaced (344 workgroups over 256 columns: 36.8 us against 29.7 over 32), and so
    // did splits of one step, whose last workgroups add many sums (4096 x 4096 f16 in
    // 64 splits of 64 k: 16.99 us against 15.26 unsplit; ncu, H200).
    for (cg_ = widest; cg_ >= narrowest; cg_ /= 2)
      for (int64_t unroll : {kSplitUnroll, kSplitUnroll / 2}) {
        int64_t ks = kWorkgroupSize / (cg_ * rg_), step = unroll * ks * vk_;
        int64_t want = (kTargetSplitWorkgroups + groups() - 1) / groups();
        if (k_.offset / step < 2 * want)
          continue;
        ks_ = ks;
        unroll_ = unroll;
        kChunk_ = k_.offset / want / step * step;
        splits_ = (k_.offset + kChunk_ - 1) / kChunk_;
        return true;
      }
    cg_ = narrowest;
    return false;
  }
  // Siblings a workgroup's tile holds.
  int64_t together() const { return perSibling_ ? 1 : static_cast<int64_t>(anchors_.size()); }
  // Workgroups a split of K takes at most: every tile of every batch index (and
  // sibling, when perSibling_) at the largest extents; all but the rows are static where
  // K is split.
  int64_t tilesPerSplit() const {
    int64_t t = ((m_.max(g_.dims) + tm_ - 1) / tm_) * ((n(widest_).offset + tn_ - 1) / tn_) *
                (static_cast<int64_t>(anchors_.size()) / together());
    for (const ir::Dim &d : batch_)
      t *= d.offset;
    return t;
  }

  // Bytes of an element of A as the kernel reads it: a graph input's own dtype (or, for
  // a value the kernel computes, its dtype, a guess at its inputs'), else a temporary's
  // (f16 and bf16 values travel between kernels as f32).
  int64_t aBytes() const {
    int id = anchor(0).operands[0];
    while (ir::opCategory(g_.nodes[id].op) == ir::Category::Layout && !el_.inKernel(id))
      id = g_.nodes[id].operands[0];
    const Node &a = g_.nodes[id];
    bool own = ir::opCategory(a.op) == ir::Category::Source || el_.inKernel(id);
    return own || !ir::isFloat(a.type.dtype) ? ir::dtypeBytes(a.type.dtype) : 4;
  }

  // The workgroup's tile and the invocation's lanes. Where a symbolic extent makes the
  // grid count more workgroups than tiles (spare_: it rounds the extent up by a tile
  // less one), the workgroups past the last tile are not valid_: they take the last
  // tile's coordinates, always in bounds, and skip all their work (a condition the
  // whole workgroup shares, so barriers stay uniform).
  void tileOrigin() {
    spare_ = !m_.isStatic() || !n(widest_).isStatic();
    for (const ir::Dim &d : batch_)
      spare_ = spare_ || !d.isStatic();
    int mTiles = m_.isStatic()
                     ? c((m_.offset + tm_ - 1) / tm_)
                     : iop(KOp::IDiv, {iop(KOp::IAdd, {el_.extent(m_), c(tm_ - 1)}), c(tm_)});
    ir::Dim nw = n(widest_);
    int nTiles = nw.isStatic()
                     ? c((nw.offset + tn_ - 1) / tn_)
                     : iop(KOp::IDiv, {iop(KOp::IAdd, {el_.extent(nw), c(tn_ - 1)}), c(tn_)});
    int g = b_.groupId();
    int batches = el_.elements(batch_);
    int inSplits = -1;
    if (splits_ > 1) { // the split is the slowest part of the workgroup id
      int tiles = iop(KOp::IMul, {iop(KOp::IMul, {mTiles, nTiles}), batches});
      if (perSibling_)
        tiles = iop(KOp::IMul, {tiles, c(static_cast<int64_t>(anchors_.size()))});
      split_ = iop(KOp::IDiv, {g, tiles});
      g = iop(KOp::IRem, {g, tiles});
      tileId_ = g;
      inSplits = lt(split_, c(splits_));
    }
    if (perSibling_) {
      int count = c(static_cast<int64_t>(anchors_.size()));
      sibling_ = iop(KOp::IRem, {g, count});
      g = iop(KOp::IDiv, {g, count});
    }
    int nt = iop(KOp::IRem, {g, nTiles});
    int rest = iop(KOp::IDiv, {g, nTiles});
    int mt = iop(KOp::IRem, {rest, mTiles});
    int bi = iop(KOp::IDiv, {rest, mTiles});
    valid_ = lt(bi, batches);
    if (inSplits >= 0)
      valid_ = b_.op(KOp::And, KType::Bool, {valid_, inSplits});
    auto last = [&](int v, int count) {
      return select(KType::I32, valid_, v, iop(KOp::ISub, {count, c(1)}));
    };
    bi_ = last(bi, batches);
    m0_ = iop(KOp::IMul, {last(mt, mTiles), c(tm_)});
    nt = last(nt, nTiles);
    if (halfRope_ > 0) { // tile nt: TN/2 columns at `off` in each half of a rope row
      int perRow = c(halfRope_ / tn_);
      int row = iop(KOp::IMul, {iop(KOp::IDiv, {nt, perRow}), c(halfRope_)});
      n0_ = iop(KOp::IAdd, {row, iop(KOp::IMul, {iop(KOp::IRem, {nt, perRow}), c(tn_ / 2)})});
    } else {
      n0_ = iop(KOp::IMul, {nt, c(tn_)});
    }
    batchCoords_ = el_.delinearize(bi_, batch_);
    lane_ = b_.localId();
    int l = lane_;
    if (kContiguous_) {
      ks_id_ = iop(KOp::IRem, {l, c(ks_)});
      l = iop(KOp::IDiv, {l, c(ks_)});
      cg_id_ = iop(KOp::IRem, {l, c(cg_)});
      rg_id_ = iop(KOp::IDiv, {l, c(cg_)});
    } else {
      cg_id_ = iop(KOp::IRem, {l, c(cg_)});
      l = iop(KOp::IDiv, {l, c(cg_)});
      rg_id_ = iop(KOp::IRem, {l, c(rg_)});
      ks_id_ = iop(KOp::IDiv, {l, c(rg_)});
    }
  }

  // Whether an index in the tiles of `tile` may lie past `extent`: only when the extent
  // is symbolic or not a multiple of the tile.
  static bool needsClamp(const ir::Dim &extent, int64_t tile) {
    return !extent.isStatic() || extent.offset % tile != 0;
  }
  // Whether sibling s's columns may end inside the tiles of the widest sibling.
  bool columnsEnd(int s) const { return needsClamp(n(s), tn_) || n(s) != n(widest_); }
  int clampBelow(int i, const ir::Dim &extent) {
    int e = el_.extent(extent);
    return select(KType::I32, lt(i, e), i, iop(KOp::ISub, {e, c(1)}));
  }

  // Matrix operand `id`'s element (row, col) for the tile's batch index.
  std::vector<int> operandCoords(int id, bool transpose, int row, int col) {
    return matmulOperandCoords(el_, id, transpose, batchCoords_, row, col);
  }

  // The sums over the invocation's slice of K of siblings `active`, in variables
  // acc_[s][r * vn_ + j].
  void accumulate(const std::vector<int> &active) {
    int rows = rm_, cols = static_cast<int>(vn_);
    std::vector<int> ms, ns;
    int mBase = iop(KOp::IAdd, {m0_, iop(KOp::IMul, {rg_id_, c(rm_)})});
    for (int r = 0; r < rows; ++r) {
      int m = r == 0 ? mBase : iop(KOp::IAdd, {mBase, c(r)});
      ms.push_back(needsClamp(m_, tm_) ? clampBelow(m, m_) : m);
    }
    int nBase = column(iop(KOp::IMul, {cg_id_, c(vn_)}));
    std::vector<std::vector<int>> nsOf(anchors_.size());
    acc_.assign(anchors_.size(), {});
    for (int s : active) {
      for (int j = 0; j < cols; ++j) {
        int col = j == 0 ? nBase : iop(KOp::IAdd, {nBase, c(j)});
        nsOf[s].push_back(columnsEnd(s) ? clampBelow(col, n(s)) : col);
      }
      for (int i = 0; i < rows * cols; ++i)
        acc_[s].push_back(b_.varNew(KType::F32, el_.f(0)));
    }
    int64_t step = unroll_ * ks_ * vk_;
    // The workgroup's k: all of K, or its split's kChunk_ (a multiple of the step; the
    // last split's may be short).
    bool mask = !k_.isStatic() || k_.offset % (splits_ > 1 ? kChunk_ : step) != 0;
    int kBegin = iop(KOp::IMul, {ks_id_, c(vk_)});
    int kEnd = el_.extent(k_);
    if (splits_ > 1) {
      int first = iop(KOp::IMul, {split_, c(kChunk_)});
      int end = iop(KOp::IAdd, {first, c(kChunk_)});
      kBegin = iop(KOp::IAdd, {first, kBegin});
      kEnd = select(KType::I32, lt(end, kEnd), end, kEnd);
    }
    int kb = b_.loopBegin(kBegin, kEnd, c(step));
    el_.pushScope();
    const Node &a0 = anchor(0);
    bool ta = a0.attrBool("transpose_a");
    // Where K is a static multiple of VK, a chunk of VK consecutive k lies wholly inside
    // or wholly past the end: one test a chunk, and a clamp to the last chunk keeps the
    // index aligned for vector loads.
    bool byChunk = k_.isStatic() && k_.offset % vk_ == 0;
    for (int64_t u = 0; u < unroll_; ++u) {
      int64_t chunk = u * ks_ * vk_;
      int kc = chunk == 0 ? kb : iop(KOp::IAdd, {kb, c(chunk)});
      int chunkInside = -1;
      if (mask && byChunk && chunk > 0) { // the loop's own k is always inside
        chunkInside = lt(kc, kEnd);
        kc = select(KType::I32, chunkInside, kc, c(k_.offset - vk_));
      }
      for (int64_t kk = 0; kk < vk_; ++kk) {
        int64_t off = chunk + kk;
        int k = kk == 0 ? kc : iop(KOp::IAdd, {kc, c(kk)});
        int inside = chunkInside;
        if (mask && !byChunk && off > 0) {
          inside = lt(k, kEnd);
          k = select(KType::I32, inside, k, iop(KOp::ISub, {kEnd, c(1)}));
        }
        auto masked = [&](int v) {
          return inside < 0 ? v : select(KType::F32, inside, v, el_.f(0));
        };
        std::vector<int> as;
        for (int m : ms)
          as.push_back(
              masked(el_.valueAt(a0.operands[0], operandCoords(a0.operands[0], ta, m, k))));
        for (int s : active) {
          const Node &a = anchor(s);
          bool tb = a.attrBool("transpose_b");
          for (int j = 0; j < cols; ++j) {
            int bv =
                masked(el_.valueAt(a.operands[1], operandCoords(a.operands[1], tb, k, nsOf[s][j])));
            for (int r = 0; r < rows; ++r) {
              int var = acc_[s][r * cols + j];
              b_.varSet(var, el_.fop(KOp::FAdd, {b_.varGet(KType::F32, var),
                                                 el_.fop(KOp::FMul, {as[r], bv})}));
            }
          }
        }
      }
    }
    el_.popScope();
    b_.loopEnd();
  }

  // Columns of the second half of a tile lie this far past the first half's end.
  int64_t ropeGap() const { return halfRope_ / 2 - tn_ / 2; }
  // The column of position `t` of the tile's columns.
  int column(int t) {
    int col = iop(KOp::IAdd, {n0_, t});
    if (halfRope_ == 0)
      return col;
    return select(KType::I32, lt(t, c(tn_ / 2)), col, iop(KOp::IAdd, {col, c(ropeGap())}));
  }

  // Index in a tile of the invocation's sum (r, j).
  int tileIndex(int r, int j) {
    int row = iop(KOp::IAdd, {iop(KOp::IMul, {rg_id_, c(rm_)}), c(r)});
    int col = iop(KOp::IAdd, {iop(KOp::IMul, {cg_id_, c(vn_)}), c(j)});
    return iop(KOp::IAdd, {iop(KOp::IMul, {row, c(tn_)}), col});
  }

  // Each sibling's tile into its shared array. When K is split, the slices' sums meet
  // by shuffles within each subgroup (slices sit sliceStride() lanes apart); where a
  // sibling's slices span subgroups, one invocation of each subgroup's slices leaves its
  // sum in the last shared array, and the workgroup folds them in order. The subgroup
  // size is known only on the device (32 on NVIDIA), so the steps test it; the tests are
  // uniform, and PTX folds them.
  void combine(const std::vector<int> &active) {
    int cols = static_cast<int>(vn_);
    auto slots = [&](const std::function<void(int, int, int)> &f) {
      for (int r = 0; r < rm_; ++r)
        for (int j = 0; j < cols; ++j)
          f(r, j, r * cols + j);
    };
    if (ks_ == 1) {
      for (int s : active)
        slots([&](int r, int j, int i) {
          b_.sharedStore(s, tileIndex(r, j), b_.varGet(KType::F32, acc_[s][i]));
        });
      b_.barrier();
      return;
    }
    int partial = static_cast<int>(anchors_.size());
    int64_t stride = sliceStride(), tile = tm_ * tn_;
    int size = b_.subgroupSize();
    for (int s : active) {
      for (int64_t mask = stride; mask < std::min(stride * ks_, kMaxSubgroupSize); mask *= 2) {
        b_.ifBegin(lt(c(mask), size));
        slots([&](int, int, int i) {
          int mine = b_.varGet(KType::F32, acc_[s][i]);
          b_.varSet(acc_[s][i],
                    el_.fop(KOp::FAdd, {mine, b_.shuffleXor(mine, static_cast<int>(mask))}));
        });
        b_.ifEnd();
      }
      int first = lt(ks_id_, c(1));
      int spans = lt(size, c(stride * ks_));
      b_.ifBegin(b_.op(KOp::Not, KType::Bool, {spans}));
      b_.ifBegin(first);
      slots([&](int r, int j, int i) {
        b_.sharedStore(s, tileIndex(r, j), b_.varGet(KType::F32, acc_[s][i]));
      });
      b_.ifEnd();
      b_.ifEnd();
      b_.ifBegin(spans);
      // Slices per subgroup (at least 1), and this slice's subgroup among the holders.
      int perGroup =
          select(KType::I32, lt(c(stride), size), iop(KOp::IDiv, {size, c(stride)}), c(1));
      b_.ifBegin(lt(iop(KOp::IRem, {ks_id_, perGroup}), c(1)));
      int holder = iop(KOp::IMul, {iop(KOp::IDiv, {ks_id_, perGroup}), c(tile)});
      slots([&](int r, int j, int i) {
        b_.sharedStore(partial, iop(KOp::IAdd, {holder, tileIndex(r, j)}),
                       b_.varGet(KType::F32, acc_[s][i]));
      });
      b_.ifEnd();
      b_.barrier();
      // The invocations fold the holders' tiles an element at a time: one loop rather
      // than one a sum keeps the kernel short (the decoder's QKV kernel: 3,928
      // instructions to 3,622).
      int e = b_.loopBegin(lane_, c(tile), c(kWorkgroupSize));
      int sum = b_.varNew(KType::F32, b_.sharedLoad(partial, KType::F32, e));
      int h = b_.loopBegin(c(1), iop(KOp::IDiv, {c(ks_), perGroup}), c(1));
      int other =
          b_.sharedLoad(partial, KType::F32, iop(KOp::IAdd, {e, iop(KOp::IMul, {h, c(tile)})}));
      b_.varSet(sum, el_.fop(KOp::FAdd, {b_.varGet(KType::F32, sum), other}));
      b_.loopEnd();
      b_.sharedStore(s, e, b_.varGet(KType::F32, sum));
      b_.loopEnd();
      b_.ifEnd();
      // Orders the tile's stores before the epilogue's reads, and the folds' reads of the
      // partial sums before the next sibling's stores.
      b_.barrier();
    }
  }

  // Each sibling's tile (through combine) and the kernel's values from it. Where K is
  // split, the workgroup's sums go to its split's place among the tile's partial sums
  // and it counts itself in; the last of the tile's workgroups to count adds the splits'
  // sums in split order (so every run adds them alike), leaves the tile's count at zero
  // for the next run, and runs the epilogue.
  void finish(const KernelStores &stores, const std::vector<int> &siblingOf,
              const std::vector<int> &active) {
    combine(active);
    if (splits_ == 1) {
      epilogue(stores, siblingOf, active);
      return;
    }
    int64_t together = static_cast<int64_t>(active.size()), tile = tm_ * tn_;
    // Element e of sibling active[a]'s sums in split `split` of the tile.
    auto at = [&](int split, int64_t a, int e) {
      return iop(KOp::IAdd, {partialBase(split, a, together), e});
    };
    int e = b_.loopBegin(lane_, c(tile), c(kWorkgroupSize));
    for (int64_t a = 0; a < together; ++a)
      b_.store(partials_, at(split_, a, e), b_.sharedLoad(active[a], KType::F32, e));
    b_.loopEnd();
    beginLastOfTile();
    e = b_.loopBegin(lane_, c(tile), c(kWorkgroupSize));
    for (int64_t a = 0; a < together; ++a)
      b_.sharedStore(active[a], e, splitSum([&](int sp) { return at(sp, a, e); }));
    b_.loopEnd();
    b_.barrier();
    epilogue(stores, siblingOf, active);
    endLastOfTile();
  }

  // Where K is split: element 0 of sibling g's sums (of `together` a workgroup) in split
  // `split` of the workgroup's tile, in the partial buffer.
  int partialBase(int split, int64_t g, int64_t together) {
    int row = iop(KOp::IAdd, {iop(KOp::IMul, {tileId_, c(splits_)}), split});
    row = iop(KOp::IAdd, {iop(KOp::IMul, {row, c(together)}), c(g)});
    return iop(KOp::IMul, {row, c(tm_ * tn_)});
  }
  // After the workgroup's sums are in the partial buffer: it counts itself in, and the
  // tile's last workgroup to count goes on (to endLastOfTile) after a fence.
  void beginLastOfTile() {
    b_.fence();
    b_.barrier();
    b_.ifBegin(lt(lane_, c(1)));
    int before = b_.atomicAdd(counters_, tileId_, c(1));
    b_.sharedStore(last_, c(0), b_.op(KOp::Cast, KType::F32, {before}));
    b_.ifEnd();
    b_.barrier();
    int counted = b_.sharedLoad(last_, KType::F32, c(0));
    b_.ifBegin(
        b_.op(KOp::Not, KType::Bool,
              {b_.op(KOp::FLt, KType::Bool, {counted, el_.f(static_cast<float>(splits_ - 1))})}));
    b_.fence();
  }
  // The last workgroup leaves the tile's count at zero for the next run.
  void endLastOfTile() {
    b_.ifBegin(lt(lane_, c(1)));
    b_.store(counters_, tileId_, c(0));
    b_.ifEnd();
    b_.ifEnd();
  }
  // The sum over the splits, in split order, of the partial sums at(split).
  int splitSum(const std::function<int(int)> &at) {
    int sum = b_.varNew(KType::F32, el_.f(0));
    int sp = b_.loopBegin(c(0), c(splits_), c(1));
    b_.varSet(sum, el_.fop(KOp::FAdd,
                           {b_.varGet(KType::F32, sum), b_.load(partials_, KType::F32, at(sp))}));
    b_.loopEnd();
    return b_.varGet(KType::F32, sum);
  }

  // Lanes between an invocation and the one holding the next slice of K.
  int64_t sliceStride() const { return kContiguous_ ? 1 : cg_ * rg_; }

  // Whether the kernel takes the tensor-core tile (see the file comment).
  bool matrixTiles() const {
    if (!opts_.matrixUnits || gemv_ || halfRope_ > 0 ||
        (!separable_ && anchors_.size() > kMatMaxMixed))
      return false;
    for (int a : anchors_)
      for (int operand : g_.nodes[a].operands)
        if (g_.typeOf(operand).dtype != ir::DType::F16)
          return false;
    return true;
  }

  // Whether the tensor-core tiles split K across workgroups (see kMatSplitBelow), with
  // their count at the largest extents: only where all but the rows are static, into
  // chunks of whole steps.
  void splitMatrixK() {
    int64_t tiles = ((m_.max(g_.dims) + tm_ - 1) / tm_) *
                    ((n(widest_).max(g_.dims) + tn_ - 1) / tn_) *
                    (perSibling_ ? static_cast<int64_t>(anchors_.size()) : 1);
    bool fixed = n(widest_).isStatic() && k_.isStatic();
    for (const ir::Dim &d : batch_) {
      tiles *= d.max(g_.dims);
      fixed = fixed && d.isStatic();
    }
    if (!fixed || tiles >= kMatSplitBelow)
      return;
    int64_t steps = (k_.offset + step_ - 1) / step_;
    int64_t want = (kMatSplitWorkgroups + tiles - 1) / tiles;
    int64_t per = std::max(kMatMinSplitSteps, (steps + want - 1) / want);
    if (per >= steps)
      return;
    kChunk_ = per * step_;
    splits_ = (steps + per - 1) / per;
  }

  // Siblings that one workgroup computes take their tiles' sums together: all of them
  // where a stored value mixes them, else one each (perSibling_).
  void lowerOnMatrixUnits(const KernelStores &stores, const std::vector<int> &siblingOf,
                          const AddScratch &addScratch) {
    tm_ = kMatTileM;
    perSibling_ = separable_;
    int64_t together = perSibling_ ? 1 : static_cast<int64_t>(anchors_.size());
    // 256 columns a tile where that leaves enough tiles: each subgroup then multiplies
    // 4 x 4 fragments a step, a load per two products rather than per 1.33.
    int64_t wideTiles = ((m_.max(g_.dims) + tm_ - 1) / tm_) *
                        ((n(widest_).max(g_.dims) + 255) / 256) *
                        (perSibling_ ? static_cast<int64_t>(anchors_.size()) : 1);
    for (const ir::Dim &d : batch_)
      wideTiles *= d.max(g_.dims);
    // (and where the columns fill them as well as 128-column tiles do: a 128-wide
    // result in 256-column tiles would leave half of each product unused).
    int64_t width = n(widest_).max(g_.dims);
    bool filled = (width + 255) / 256 * 256 <= (width + 127) / 128 * 128;
    tn_ = together == 1 && wideTiles >= kMinWideTiles && filled ? 256 : 128;
    wg_ = opts_.warpgroupMatrix;
    for (int s = 0; s < static_cast<int>(anchors_.size()); ++s) {
      const Node &a = anchor(s);
      wg_ = wg_ && asyncBuffer(a.operands[0], a.attrBool("transpose_a"), true) >= 0 &&
            asyncBuffer(a.operands[1], a.attrBool("transpose_b"), false) >= 0;
    }
    if (wg_) {
      lowerOnWarpgroups(stores, siblingOf, addScratch, together);
      return;
    }
    fragsN_ = tn_ / kMatWarpsN / kMat;
    aStride_ = kMatTileK + kMatPad;
    bStride_ = kContiguous_ ? kMatTileK + kMatPad : tn_ + kMatPad;
    aSlab_ = kMatTileM * aStride_;
    bSlab_ = (kContiguous_ ? tn_ : kMatTileK) * bStride_;
    // Three stages where copies run ahead by themselves and the shared memory allows;
    // two where registers carry them.
    bool async = false;
    for (int s = 0; s < static_cast<int>(anchors_.size()); ++s) {
      const Node &a = anchor(s);
      async = async || asyncBuffer(a.operands[0], a.attrBool("transpose_a"), true) >= 0 ||
              asyncBuffer(a.operands[1], a.attrBool("transpose_b"), false) >= 0;
    }
    splitMatrixK();
    declareMatrixShared(together, async ? 3 : 2, kMatMaxSharedBytes, addScratch);
    // Two workgroups a multiprocessor where a subgroup's sums take 64 registers (one
    // sibling's 128 columns): sixteen subgroups to hide each other's latencies, and a
    // bound that keeps a split's epilogue from costing the second workgroup.
    if (together * kMatFragsM * fragsN_ * kMat * kMat / kMatSubgroup <= 64)
      el_.kernel().resident = 2;
    tileOrigin();
    int warp = iop(KOp::IDiv, {lane_, c(kMatSubgroup)});
    warpLane_ = iop(KOp::IRem, {lane_, c(kMatSubgroup)});
    warpRow_ = iop(KOp::IMul, {iop(KOp::IDiv, {warp, c(kMatWarpsN)}), c(kMatFragsM * kMat)});
    warpCol_ = iop(KOp::IMul, {iop(KOp::IRem, {warp, c(kMatWarpsN)}), c(fragsN_ * kMat)});
    scratch_ = iop(KOp::IMul, {warp, c(together * kMat * kMat)});
    matrixTile(stores, siblingOf, [&](const std::vector<int> &group) { return matrixSums(group); });
  }

  // The shared arrays of a tensor-core tile (stages of A's slabs and of B's, the
  // subgroups' scratch for the epilogue, and where K is split, the flag that says the
  // workgroup finishes its tile), with `stages` or, where they would take more than
  // `maxBytes`, one less; and where K is split, the scratch buffers.
  void declareMatrixShared(int64_t together, int64_t stages, int64_t maxBytes,
                           const AddScratch &addScratch) {
    int64_t scratch = kWorkgroupSize / kMatSubgroup * together * kMat * kMat;
    auto declare = [&](int64_t n) {
      stages_ = n;
      el_.kernel().shared = {{MemType::F16, static_cast<int>(n * aSlab_)},
                             {MemType::F16, static_cast<int>(n * together * bSlab_)},
                             {MemType::F32, static_cast<int>(scratch)}};
      if (splits_ > 1) // whether the workgroup finishes its tile
        el_.kernel().shared.push_back({MemType::F32, 1});
    };
    declare(stages);
    if (sharedBytes(el_.kernel()) > maxBytes)
      declare(stages - 1);
    if (splits_ > 1) {
      last_ = 3;
      ir::TensorType sums{ir::DType::F32,
                          {ir::Dim::of(tilesPerSplit() * splits_ * together * tm_ * tn_)}};
      partials_ = addScratch(anchor(0).name + "_partials", sums, runtime::BufferRole::Temp);
      counters_ =
          addScratch(anchor(0).name + "_counters", {ir::DType::I32, {ir::Dim::of(tilesPerSplit())}},
                     runtime::BufferRole::Zeroed);
    }
  }

  // The tile's sums (by `sums`, for each group of siblings a workgroup computes
  // together) and their epilogue, in the workgroups that hold a tile.
  void matrixTile(const KernelStores &stores, const std::vector<int> &siblingOf,
                  const std::function<std::vector<int>(const std::vector<int> &)> &sums) {
    if (spare_)
      b_.ifBegin(valid_);
    if (perSibling_) {
      forEachSibling([&](int s) { matrixEpilogue(stores, siblingOf, {s}, sums({s})); });
    } else {
      std::vector<int> all(anchors_.size());
      std::iota(all.begin(), all.end(), 0);
      matrixEpilogue(stores, siblingOf, all, sums(all));
    }
    if (spare_)
      b_.ifEnd();
  }

  // The warpgroup tile: as the tensor-core tile, with A's and B's slabs in core matrices
  // (see warpgroupSums) and each warpgroup's sums of 64 rows by 128 columns held in
  // warpgroup registers; subgroup w of warpgroup g holds the tile's rows
  // [64 g + 16 w, 64 g + 16 w + 16), all its columns.
  void lowerOnWarpgroups(const KernelStores &stores, const std::vector<int> &siblingOf,
                         const AddScratch &addScratch, int64_t together) {
    step_ = kWgTileK;
    fragsM_ = 1;
    fragsN_ = tn_ / kMat;
    aSlab_ = kMatTileM * step_;
    bSlab_ = step_ * tn_;
    splitMatrixK();
    declareMatrixShared(together, kWgStages, kWgMaxSharedBytes, addScratch);
    tileOrigin();
    int warp = iop(KOp::IDiv, {lane_, c(kMatSubgroup)});
    warpLane_ = iop(KOp::IRem, {lane_, c(kMatSubgroup)});
    warpgroup_ = iop(KOp::IDiv, {warp, c(4)});
    warpRow_ = iop(KOp::IMul, {warp, c(kMat)});
    warpCol_ = c(0);
    scratch_ = iop(KOp::IMul, {warp, c(together * kMat * kMat)});
    matrixTile(stores, siblingOf,
               [&](const std::vector<int> &group) { return warpgroupSums(group); });
  }

  // The sums of siblings `group` over the warpgroup's part of the tile: variables, tn_ /
  // 128 a sibling, one sibling after another. Slab i of K (A's 128 x 64, each sibling's
  // B 64 x tn_) sits in slot i % stages_ of the shared arrays, in core matrices: a slab
  // of R rows whose C columns run along memory puts element (r, c) at byte (r / 8) * 16 C
  // + (c / 8) * 128 + (r % 8) * 16 + (c % 8) * 2, so that chunk e of 8 elements
  // (copied by invocation e % 256) lands at byte 16 e, and eight consecutive invocations
  // take eight rows of one core matrix. The copies of step i + stages_ - 2 start in step
  // i, after its barrier; by then each warpgroup has waited for its products of step i
  // - 2, the last that read that slot (a warpgroup leaves one batch of products running
  // from step to step).
  std::vector<int> warpgroupSums(const std::vector<int> &group) {
    const Node &a0 = anchor(group[0]);
    int aId = a0.operands[0];
    bool ta = a0.attrBool("transpose_a");
    int aBuffer = asyncBuffer(aId, ta, true);
    int64_t together = static_cast<int64_t>(group.size());
    int64_t halves = tn_ / kWgColumns;
    bool mnMajor = !kContiguous_; // B's slab: rows of k, columns of n
    int64_t bRows = kContiguous_ ? tn_ : step_, bCols = kContiguous_ ? step_ : tn_;
    int kFirst = c(0), kEnd = el_.extent(k_);
    if (splits_ > 1) {
      kFirst = iop(KOp::IMul, {split_, c(kChunk_)});
      int end = iop(KOp::IAdd, {kFirst, c(kChunk_)});
      kEnd = select(KType::I32, lt(end, kEnd), end, kEnd);
    }
    auto aBase = [&](int at) { return iop(KOp::IMul, {at, c(aSlab_)}); };
    auto bBase = [&](int at, int64_t g) {
      return iop(KOp::IMul, {iop(KOp::IAdd, {iop(KOp::IMul, {at, c(together)}), c(g)}), c(bSlab_)});
    };
    // The copies of the step at k0 into slot `at` where it lies inside the workgroup's k,
    // and a group of them committed either way (so that every step counts one).
    auto copies = [&](int k0, int at) {
      b_.ifBegin(lt(k0, kEnd));
      el_.pushScope();
      slabCopy(group[0], false, aId, ta, aBuffer, 0, aBase(at), kMatTileM, step_, 0, k0);
      for (int64_t g = 0; g < together; ++g) {
        const Node &n = anchor(group[g]);
        bool tb = n.attrBool("transpose_b");
        slabCopy(group[g], true, n.operands[1], tb, asyncBuffer(n.operands[1], tb, false), 1,
                 bBase(at, g), bRows, bCols, 0, k0);
      }
      el_.popScope();
      b_.ifEnd();
      b_.copyCommit();
    };
    for (int64_t j = 0; j + 2 < stages_; ++j)
      copies(iop(KOp::IAdd, {kFirst, c(j * step_)}), c(j));
    std::vector<int> sums;
    for (int64_t i = 0; i < together * halves; ++i)
      sums.push_back(b_.varNew(KType::MatW, b_.wgZero()));
    int slotVar = b_.varNew(KType::I32, c(0));
    int kb = b_.loopBegin(kFirst, kEnd, c(step_));
    el_.pushScope();
    int now = b_.varGet(KType::I32, slotVar);
    // This step's copies are done (one group a step after it may still run), visible
    // to the products, and every invocation's are.
    b_.copyWait(stages_ - 3);
    b_.emit({KOp::ProxyFence, KType::I32});
    b_.barrier();
    int ahead = iop(KOp::IAdd, {now, c(stages_ - 2)});
    ahead = select(KType::I32, lt(ahead, c(stages_)), ahead, iop(KOp::ISub, {ahead, c(stages_)}));
    copies(iop(KOp::IAdd, {kb, c((stages_ - 2) * step_)}), ahead);
    b_.emit({KOp::WgFence, KType::I32});
    // Descriptors (see KOp::WgDesc): A's core matrices lie 128 bytes apart along k and
    // 16 * step_ along m; B's likewise where K-major, else 16 * tn_ along k and 128
    // along n.
    int64_t core = 64; // elements of a core matrix
    for (int64_t kk = 0; kk < step_ / kMat; ++kk) {
      int aAt = iop(
          KOp::IAdd,
          {aBase(now), iop(KOp::IAdd, {iop(KOp::IMul, {warpgroup_, c(64 / 8 * step_ / 8 * core)}),
                                       c(2 * kk * core)})});
      int da = b_.wgDesc(0, aAt, 128, 16 * step_);
      for (int64_t g = 0; g < together; ++g)
        for (int64_t h = 0; h < halves; ++h) {
          int64_t off = mnMajor ? 2 * kk * (tn_ / 8) * core + h * kWgColumns / 8 * core
                                : h * kWgColumns / 8 * (step_ / 8) * core + 2 * kk * core;
          int db = mnMajor ? b_.wgDesc(1, iop(KOp::IAdd, {bBase(now, g), c(off)}), 16 * tn_, 128)
                           : b_.wgDesc(1, iop(KOp::IAdd, {bBase(now, g), c(off)}), 128, 16 * step_);
          int var = sums[g * halves + h];
          b_.varSet(var, b_.wgMulAdd(da, db, b_.varGet(KType::MatW, var), mnMajor));
        }
    }
    b_.emit({KOp::WgCommit, KType::I32});
    b_.emit({KOp::WgWait, KType::I32, {}, 1});
    int after = iop(KOp::IAdd, {now, c(1)});
    b_.varSet(slotVar, select(KType::I32, lt(after, c(stages_)), after, c(0)));
    el_.popScope();
    b_.loopEnd();
    b_.emit({KOp::WgWait, KType::I32, {}, 0});
    b_.copyWait(0); // the copies past K, which nothing reads
    return sums;
  }

  // A slab of `rows` x `cols` of operand `id` (its element (r, c) at `coords`), from
  // (r0, c0): `kIsRow` says which of r and c is k, whose values past K read as zeros. Each
  // invocation takes chunks of 8 consecutive c, which the code generator merges into 16-byte loads
  // where the operand's rows are contiguous in memory; the values come chunk by chunk, as slabStore
  // puts them.
  std::vector<int> slabValues(int id, int64_t rows, int64_t cols, bool kIsRow, int r0, int c0,
                              const std::function<std::vector<int>(int, int)> &coords) {
    int kEnd = el_.extent(k_);
    // Where K is a static multiple of 8, a chunk along k lies wholly inside or past it:
    // one test a chunk, and a clamp that keeps it aligned.
    bool byChunk = k_.isStatic() && k_.offset % 8 == 0;
    std::vector<int> values;
    for (int64_t q = 0; q < rows * cols / 8 / kWorkgroupSize; ++q) {
      auto [row, col] = slabChunk(cols, q);
      int r = iop(KOp::IAdd, {r0, row}), cc = iop(KOp::IAdd, {c0, col});
      int chunkInside = -1;
      if (byChunk && !kIsRow && needsClamp(k_, kMatTileK)) {
        chunkInside = lt(cc, kEnd);
        cc = select(KType::I32, chunkInside, cc, c(k_.offset - 8));
      }
      for (int t = 0; t < 8; ++t) {
        int rt = r, ct = t == 0 ? cc : iop(KOp::IAdd, {cc, c(t)});
        int inside = -1;
        if (kIsRow) {
          if (needsClamp(k_, kMatTileK)) {
            inside = lt(r, kEnd);
            rt = clampBelow(r, k_);
          }
        } else if (byChunk) {
          inside = chunkInside; // none where K is a multiple of the slab's k
        } else {
          inside = lt(ct, kEnd);
          ct = select(KType::I32, inside, ct, iop(KOp::ISub, {kEnd, c(1)}));
        }
        int v = el_.valueAt(id, coords(rt, ct));
        values.push_back(inside < 0 ? v : select(KType::F32, inside, v, el_.f(0)));
      }
    }
    return values;
  }

  // Where element (row, col) of a slab whose rows lie `stride` apart sits in its shared
  // array, the slab starting at element `base`.
  int slabIndex(int base, int row, int64_t stride, int col) {
    return iop(KOp::IAdd, {iop(KOp::IAdd, {base, iop(KOp::IMul, {row, c(stride)})}), col});
  }

  // The invocation's chunk q of a slab with `cols` columns: its row and first column.
  std::pair<int, int> slabChunk(int64_t cols, int64_t q) {
    int e = iop(KOp::IAdd, {lane_, c(q * kWorkgroupSize)});
    return {iop(KOp::IDiv, {e, c(cols / 8)}),
            iop(KOp::IMul, {iop(KOp::IRem, {e, c(cols / 8)}), c(8)})};
  }

  // Chunk q of the invocation's chunks of a slab.
  int chunkId(int64_t q) { return iop(KOp::IAdd, {lane_, c(q * kWorkgroupSize)}); }

  // The invocation's chunk q of a slab of `cols` columns in core matrices (see
  // warpgroupSums): its row and first column.
  std::pair<int, int> coreChunk(int64_t cols, int64_t q) {
    int e = chunkId(q);
    int row = iop(KOp::IAdd, {iop(KOp::IMul, {iop(KOp::IDiv, {e, c(cols)}), c(8)}),
                              iop(KOp::IRem, {e, c(8)})});
    int col = iop(KOp::IMul, {iop(KOp::IRem, {iop(KOp::IDiv, {e, c(8)}), c(cols / 8)}), c(8)});
    return {row, col};
  }

  // Puts values[first, first + count) of slabValues into shared array `array` from
  // element `base`, rows `stride` apart.
  void slabStore(int array, int base, int64_t cols, int64_t stride, const std::vector<int> &values,
                 size_t first, size_t count) {
    for (size_t i = 0; i < count; i += 8) {
      auto [row, col] = slabChunk(cols, static_cast<int64_t>(i / 8));
      int at = slabIndex(base, row, stride, col);
      for (int t = 0; t < 8; ++t)
        b_.sharedStore(array, t == 0 ? at : iop(KOp::IAdd, {at, c(t)}), values[first + i + t]);
    }
  }

  // The buffer from which operand `id` reaches the shared slabs by asynchronous copies,
  // or -1: an f16 buffer that holds it, directly or through views, with unit stride
  // along the slab's chunks (k of A; k of B where the tile reads B by rows of n, which
  // the first sibling's B sets, else n) and every chunk 16 aligned bytes of the buffer
  // (alignedChunks).
  int asyncBuffer(int id, bool transposed, bool isA) {
    int rank = g_.typeOf(id).rank();
    // The axis that chunks run along: k for A and for K-contiguous B, else n.
    int chunkAxis = (isA ? !transposed : kContiguous_ == transposed) ? rank - 1 : rank - 2;
    if (unitStrideAxis(g_, id) != chunkAxis || !alignedChunks(g_, id, chunkAxis))
      return -1;
    int buffer = el_.viewedBuffer(id);
    return buffer >= 0 && el_.kernel().buffers[buffer].elem == MemType::F16 ? buffer : -1;
  }

  // Starts the copies of the invocation's chunks of a slab of operand `id` (B when `isB`)
  // from buffer `buffer` for the step at k0 into shared array `array` from element
  // `base`. Rows past M or N repeat the last, and a chunk of k past K (which is a
  // multiple of 8) is zeros.
  void slabCopy(int s, bool isB, int id, bool transposed, int buffer, int array, int base,
                int64_t rows, int64_t cols, int64_t stride, int k0) {
    int kEnd = el_.extent(k_);
    bool kIsRow = isB && !kContiguous_;
    for (int64_t q = 0; q < rows * cols / 8 / kWorkgroupSize; ++q) {
      auto [row, col] = wg_ ? coreChunk(cols, q) : slabChunk(cols, q);
      int r = iop(KOp::IAdd, {kIsRow ? k0 : isB ? n0_ : m0_, row});
      int cc = iop(KOp::IAdd, {kIsRow ? n0_ : k0, col});
      int inside = b_.emit({KOp::ConstB, KType::Bool, {}, 1});
      if (kIsRow) { // rows of k, chunks of n
        if (needsClamp(k_, step_)) {
          inside = lt(r, kEnd);
          r = clampBelow(r, k_);
        }
        if (columnsEnd(s))
          cc = select(KType::I32, lt(cc, el_.extent(n(s))), cc, c(n(s).offset - 8));
      } else { // rows of m or n, chunks of k
        const ir::Dim &extent = isB ? n(s) : m_;
        if (isB ? columnsEnd(s) : needsClamp(m_, tm_))
          r = clampBelow(r, extent);
        if (needsClamp(k_, step_)) {
          inside = lt(cc, kEnd);
          cc = select(KType::I32, inside, cc, c(k_.offset - 8));
        }
      }
      std::vector<int> at = isB && !kIsRow ? operandCoords(id, transposed, cc, r)
                                           : operandCoords(id, transposed, r, cc);
      int index = el_.viewedIndex(id, at);
      int to = wg_ ? iop(KOp::IAdd, {base, iop(KOp::IMul, {chunkId(q), c(8)})})
                   : slabIndex(base, row, stride, col);
      b_.copyAsync(buffer, index, array, to, inside);
    }
  }

  // The sums of siblings `group` over the subgroup's fragments: variables, kMatFragsM x
  // fragsN_ a sibling, one sibling after another. The shared arrays hold stages_ slabs of
  // A and of each sibling's B, step i of K in slab i % stages_ (the slot, carried in a
  // variable rather than divided out). Operands that allow it (see asyncBuffer) travel by
  // asynchronous copies, step i + stages_'s started in step i; the others are loaded
  // into registers during the step before theirs and stored before its barrier (the
  // steps past K fetch the first again, always in bounds). One barrier a step, before
  // its last 16 k of products (after all of them where registers carry an operand):
  // past it the next step's slabs are complete and visible, and every subgroup has
  // loaded this step's fragments, so its slabs are free for the next copies. Loaded and
  // stored in one iteration, the values in registers never meet in a phi, where LLVM
  // would fold the loads into one at the loop's top.
  std::vector<int> matrixSums(const std::vector<int> &group) {
    struct Factor {
      int id, async;
      bool transposed;
    };
    const Node &a0 = anchor(group[0]);
    Factor a{a0.operands[0], -1, a0.attrBool("transpose_a")};
    a.async = asyncBuffer(a.id, a.transposed, true);
    std::vector<Factor> bs;
    for (int s : group) {
      const Node &n = anchor(s);
      bool tb = n.attrBool("transpose_b");
      bs.push_back({n.operands[1], asyncBuffer(n.operands[1], tb, false), tb});
    }
    bool async = a.async >= 0, carried = a.async < 0;
    for (const Factor &b : bs) {
      async = async || b.async >= 0;
      carried = carried || b.async < 0;
    }
    int64_t together = static_cast<int64_t>(group.size());
    int64_t bRows = kContiguous_ ? tn_ : kMatTileK;
    int64_t bCols = kContiguous_ ? kMatTileK : tn_;
    // The workgroup's k: all of K, or its split's kChunk_ (the last split's may be
    // short); steps past its end fetch its first again.
    int kFirst = c(0), kEnd = el_.extent(k_);
    if (splits_ > 1) {
      kFirst = iop(KOp::IMul, {split_, c(kChunk_)});
      int end = iop(KOp::IAdd, {kFirst, c(kChunk_)});
      kEnd = select(KType::I32, lt(end, kEnd), end, kEnd);
    }
    auto inK = [&](int k0) { return select(KType::I32, lt(k0, kEnd), k0, kFirst); };
    auto aBase = [&](int at) { return iop(KOp::IMul, {at, c(aSlab_)}); };
    auto bBase = [&](int at, size_t g) {
      return iop(KOp::IMul, {iop(KOp::IAdd, {iop(KOp::IMul, {at, c(together)}), c(g)}), c(bSlab_)});
    };
    // The copies of the step at k0 into slot `at`, started and committed.
    auto copies = [&](int k0, int at) {
      if (a.async >= 0)
        slabCopy(group[0], false, a.id, a.transposed, a.async, 0, aBase(at), kMatTileM, kMatTileK,
                 aStride_, k0);
      for (size_t g = 0; g < bs.size(); ++g)
        if (bs[g].async >= 0)
          slabCopy(group[g], true, bs[g].id, bs[g].transposed, bs[g].async, 1, bBase(at, g), bRows,
                   bCols, bStride_, k0);
      b_.copyCommit();
    };
    // The values of the step at k0 of the operands that registers carry, A's first.
    auto fetch = [&](int k0) {
      std::vector<int> v;
      if (a.async < 0) { // A's rows past M repeat the last (their sums are not stored)
        v = slabValues(a.id, kMatTileM, kMatTileK, false, m0_, k0, [&](int m, int k) {
          return operandCoords(a.id, a.transposed, needsClamp(m_, tm_) ? clampBelow(m, m_) : m, k);
        });
      }
      for (size_t g = 0; g < bs.size(); ++g) {
        if (bs[g].async >= 0)
          continue;
        int s = group[g];
        auto bAt = [&](int k, int n) { // so do B's columns past N
          return operandCoords(bs[g].id, bs[g].transposed, k,
                               columnsEnd(s) ? clampBelow(n, this->n(s)) : n);
        };
        std::vector<int> bv =
            kContiguous_ // rows of n, each 32 consecutive k; else rows of k, each of tn_ n
                ? slabValues(bs[g].id, tn_, kMatTileK, false, n0_, k0,
                             [&](int n, int k) { return bAt(k, n); })
                : slabValues(bs[g].id, kMatTileK, tn_, true, k0, n0_, bAt);
        v.insert(v.end(), bv.begin(), bv.end());
      }
      return v;
    };
    auto store = [&](int at, const std::vector<int> &values) {
      size_t first = 0;
      if (a.async < 0) {
        first = static_cast<size_t>(kMatTileM * kMatTileK / kWorkgroupSize);
        slabStore(0, aBase(at), kMatTileK, aStride_, values, 0, first);
      }
      size_t count = static_cast<size_t>(bRows * bCols / kWorkgroupSize);
      for (size_t g = 0; g < bs.size(); ++g)
        if (bs[g].async < 0) {
          slabStore(1, bBase(at, g), bCols, bStride_, values, first, count);
          first += count;
        }
    };
    // The slabs of the first stages_ steps (async), the first step's carried values,
    // and the barrier after which step 0's slabs are complete and visible.
    for (int64_t j = 0; async && j < stages_; ++j)
      copies(inK(iop(KOp::IAdd, {kFirst, c(j * kMatTileK)})), c(j));
    if (carried)
      store(c(0), fetch(kFirst));
    if (async)
      b_.copyWait(static_cast<int>(stages_ - 1));
    b_.barrier();
    std::vector<int> sums;
    for (int64_t i = 0; i < together * kMatFragsM * fragsN_; ++i)
      sums.push_back(b_.varNew(KType::MatC, b_.matZero()));
    int slotVar = b_.varNew(KType::I32, c(0));
    int kb = b_.loopBegin(kFirst, kEnd, c(kMatTileK));
    el_.pushScope();
    int now = b_.varGet(KType::I32, slotVar);
    int after = iop(KOp::IAdd, {now, c(1)});
    int next = select(KType::I32, lt(after, c(stages_)), after, c(0));
    std::vector<int> carriedValues;
    if (carried)
      carriedValues = fetch(inK(iop(KOp::IAdd, {kb, c(kMatTileK)})));
    // Every fragment of the step, then the products of all but the last 16 k; the
    // barrier comes before the last products, so that the subgroups meet while the
    // earlier products run and start the next step on loaded fragments.
    std::vector<std::vector<int>> as, bf;
    for (int64_t kk = 0; kk < kMatTileK; kk += kMat) {
      as.emplace_back();
      bf.emplace_back();
      for (int64_t i = 0; i < kMatFragsM; ++i) {
        int row = iop(KOp::IAdd, {warpRow_, c(i * kMat)});
        int at = iop(KOp::IAdd, {aBase(now), iop(KOp::IMul, {row, c(aStride_)})});
        as.back().push_back(
            b_.matLoad(KType::MatA, 0, iop(KOp::IAdd, {at, c(kk)}), aStride_, false));
      }
      for (size_t g = 0; g < bs.size(); ++g)
        for (int64_t j = 0; j < fragsN_; ++j) {
          int col = iop(KOp::IAdd, {warpCol_, c(j * kMat)});
          int at = kContiguous_ ? iop(KOp::IAdd, {iop(KOp::IMul, {col, c(bStride_)}), c(kk)})
                                : iop(KOp::IAdd, {c(kk * bStride_), col});
          bf.back().push_back(b_.matLoad(KType::MatB, 1, iop(KOp::IAdd, {bBase(now, g), at}),
                                         bStride_, kContiguous_));
        }
    }
    auto products = [&](size_t piece) {
      for (int64_t g = 0; g < together; ++g)
        for (int64_t i = 0; i < kMatFragsM; ++i)
          for (int64_t j = 0; j < fragsN_; ++j) {
            int var = sums[(g * kMatFragsM + i) * fragsN_ + j];
            b_.varSet(var, b_.matMulAdd(as[piece][i], bf[piece][g * fragsN_ + j],
                                        b_.varGet(KType::MatC, var)));
          }
    };
    // Where registers carry an operand, all the products come first: they hide the
    // loads that its stores wait for.
    size_t early = carried ? as.size() : as.size() - 1;
    for (size_t piece = 0; piece < early; ++piece)
      products(piece);
    // The next step's carried values and (waited for) copies, then the barrier: past it
    // they are visible, and every subgroup has loaded this step's fragments, which
    // frees its slabs for the copies of the step stages_ ahead.
    if (carried)
      store(next, carriedValues);
    if (async)
      b_.copyWait(static_cast<int>(stages_ - 2));
    b_.barrier();
    if (async)
      copies(inK(iop(KOp::IAdd, {kb, c(stages_ * kMatTileK)})), now);
    for (size_t piece = early; piece < as.size(); ++piece)
      products(piece);
    b_.varSet(slotVar, next);
    el_.popScope();
    b_.loopEnd();
    if (async) // the copies past K, which nothing reads
      b_.copyWait(0);
    return sums;
  }

  // Each fragment's sums of siblings `group` (matrixSums) through the subgroup's part of
  // the scratch array to the stored values: every invocation takes 8 of the fragment's
  // 256 elements. Where K is split, the workgroup's sums go to its split's place among
  // the tile's partial sums and it counts itself in; the last of the tile's workgroups
  // to count adds the splits' sums in split order (so every run adds them alike) into
  // the scratch array, fragment by fragment, for the same epilogue, and leaves the
  // tile's count at zero for the next run.
  void matrixEpilogue(const KernelStores &stores, const std::vector<int> &siblingOf,
                      const std::vector<int> &group, const std::vector<int> &sums) {
    int64_t frags = fragsM_ * fragsN_, together = static_cast<int64_t>(group.size());
    auto scratchAt = [&](int64_t g, int e) {
      return iop(KOp::IAdd, {scratch_, iop(KOp::IAdd, {c(g * kMat * kMat), e})});
    };
    auto stage = [&](int64_t i, int64_t j) {
      b_.barrier(); // the last fragment's elements are read
      for (int64_t g = 0; g < together; ++g) {
        if (wg_) { // sums of 128 columns a variable, a fragment a block of 16
          int64_t per = kWgColumns / kMat;
          b_.wgStore(2, scratchAt(g, c(0)),
                     b_.varGet(KType::MatW, sums[g * (fragsN_ / per) + j / per]), j % per);
        } else {
          b_.matStore(2, scratchAt(g, c(0)), kMat,
                      b_.varGet(KType::MatC, sums[g * frags + i * fragsN_ + j]));
        }
      }
      b_.barrier();
    };
    if (splits_ == 1) {
      for (int64_t i = 0; i < fragsM_; ++i)
        for (int64_t j = 0; j < fragsN_; ++j) {
          stage(i, j);
          fragmentValues(stores, siblingOf, group, i, j);
        }
      return;
    }
    // Element e of fragment (i, j) of sibling group[g]'s sums in split `split`.
    auto partial = [&](int split, int64_t g, int64_t i, int64_t j, int e) {
      int m =
          iop(KOp::IAdd, {warpRow_, iop(KOp::IAdd, {c(i * kMat), iop(KOp::IDiv, {e, c(kMat)})})});
      int n =
          iop(KOp::IAdd, {warpCol_, iop(KOp::IAdd, {c(j * kMat), iop(KOp::IRem, {e, c(kMat)})})});
      int inTile = iop(KOp::IAdd, {iop(KOp::IMul, {m, c(tn_)}), n});
      return iop(KOp::IAdd, {partialBase(split, g, together), inTile});
    };
    for (int64_t i = 0; i < fragsM_; ++i)
      for (int64_t j = 0; j < fragsN_; ++j) {
        stage(i, j);
        int e = b_.loopBegin(warpLane_, c(kMat * kMat), c(kMatSubgroup));
        for (int64_t g = 0; g < together; ++g)
          b_.store(partials_, partial(split_, g, i, j, e),
                   b_.sharedLoad(2, KType::F32, scratchAt(g, e)));
        b_.loopEnd();
      }
    beginLastOfTile();
    for (int64_t i = 0; i < fragsM_; ++i)
      for (int64_t j = 0; j < fragsN_; ++j) {
        b_.barrier(); // the last fragment's elements are read
        int e = b_.loopBegin(warpLane_, c(kMat * kMat), c(kMatSubgroup));
        for (int64_t g = 0; g < together; ++g)
          b_.sharedStore(2, scratchAt(g, e),
                         splitSum([&](int sp) { return partial(sp, g, i, j, e); }));
        b_.loopEnd();
        b_.barrier();
        fragmentValues(stores, siblingOf, group, i, j);
      }
    endLastOfTile();
  }

  // The stored values of fragment (i, j) of the subgroup's part of the tile, from the
  // sums of siblings `group` in its part of the scratch array.
  void fragmentValues(const KernelStores &stores, const std::vector<int> &siblingOf,
                      const std::vector<int> &group, int64_t i, int64_t j) {
    int fm = iop(KOp::IAdd, {m0_, iop(KOp::IAdd, {warpRow_, c(i * kMat)})});
    int fn = iop(KOp::IAdd, {n0_, iop(KOp::IAdd, {warpCol_, c(j * kMat)})});
    el_.setAnchorValues([this, fm, fn, group](int id, const std::vector<int> &coords) {
      int64_t g = std::find(group.begin(), group.end(), anchorSibling(id)) - group.begin();
      size_t r = coords.size();
      int mi = iop(KOp::ISub, {coords[r - 2], fm}), ni = iop(KOp::ISub, {coords[r - 1], fn});
      int at = iop(KOp::IAdd, {iop(KOp::IMul, {mi, c(kMat)}), ni});
      return b_.sharedLoad(2, KType::F32,
                           iop(KOp::IAdd, {scratch_, iop(KOp::IAdd, {c(g * kMat * kMat), at})}));
    });
    // A loop, not 8 copies of the epilogue: the copies made the kernel 3 times as
    // long and its PTX twice as slow to generate.
    int e = b_.loopBegin(warpLane_, c(kMat * kMat), c(kMatSubgroup));
    el_.pushScope();
    int m = iop(KOp::IAdd, {fm, iop(KOp::IDiv, {e, c(kMat)})});
    int col = iop(KOp::IAdd, {fn, iop(KOp::IRem, {e, c(kMat)})});
    storeElement(stores, siblingOf, group, m, col);
    el_.popScope();
    b_.loopEnd();
  }

  // The kernel's stored values, element by element of the tile, with each sibling's
  // result read from its tile.
  void epilogue(const KernelStores &stores, const std::vector<int> &siblingOf,
                const std::vector<int> &active) {
    el_.setAnchorValues([this](int id, const std::vector<int> &coords) {
      int s = anchorSibling(id);
      size_t r = coords.size();
      int mi = iop(KOp::ISub, {coords[r - 2], m0_}), ni = iop(KOp::ISub, {coords[r - 1], n0_});
      if (halfRope_ > 0) // back from the second half of the rope row
        ni = select(KType::I32, lt(ni, c(tn_ / 2)), ni, iop(KOp::ISub, {ni, c(ropeGap())}));
      return b_.sharedLoad(s, KType::F32, iop(KOp::IAdd, {iop(KOp::IMul, {mi, c(tn_)}), ni}));
    });
    int e = b_.loopBegin(lane_, c(tm_ * tn_), c(kWorkgroupSize));
    el_.pushScope();
    int m = iop(KOp::IAdd, {m0_, iop(KOp::IDiv, {e, c(tn_)})});
    storeElement(stores, siblingOf, active, m, column(iop(KOp::IRem, {e, c(tn_)})));
    el_.popScope();
    b_.loopEnd();
  }

  // The stored values of siblings `active` at element (m, col) of their results.
  void storeElement(const KernelStores &stores, const std::vector<int> &siblingOf,
                    const std::vector<int> &active, int m, int col) {
    int rowOk = needsClamp(m_, tm_) ? b_.op(KOp::And, KType::Bool, {valid_, lt(m, el_.extent(m_))})
                                    : valid_;
    for (size_t i = 0; i < stores.size(); ++i) {
      auto [node, buffer] = stores[i];
      int s = siblingOf[i];
      if (std::find(active.begin(), active.end(), s) == active.end())
        continue;
      const ir::Shape &os = g_.typeOf(anchors_[s]).shape;
      int ok =
          columnsEnd(s) ? b_.op(KOp::And, KType::Bool, {rowOk, lt(col, el_.extent(n(s)))}) : rowOk;
      b_.ifBegin(ok);
      el_.pushScope();
      std::vector<int> at = batchCoords_;
      at.push_back(m);
      at.push_back(col);
      int linear = el_.linearize(at, os);
      const ir::Shape &ss = el_.storedShape(node);
      el_.store(buffer, linear, node,
                el_.valueAt(node, ss == os ? at : el_.delinearize(linear, ss)));
      el_.popScope();
      b_.ifEnd();
    }
  }

  // Grid points: the batch, the rows and columns rounded up to whole tiles (a
  // symbolic extent as extent + tile - 1, which counts at least its tiles), and
  // 256 invocations per tile.
  void grid(runtime::ExecKernel &exec) {
    exec.grid = batch_;
    auto rounded = [](const ir::Dim &d, int64_t tile) {
      return d.isStatic() ? ir::Dim::of((d.offset + tile - 1) / tile * tile)
                          : ir::Dim::symbol(d.sym, d.offset + tile - 1);
    };
    exec.grid.push_back(rounded(m_, tm_));
    exec.grid.push_back(rounded(n(widest_), tn_));
    if (perSibling_)
      exec.grid.push_back(ir::Dim::of(static_cast<int64_t>(anchors_.size())));
    if (splits_ > 1)
      exec.grid.push_back(ir::Dim::of(splits_));
    int64_t tile = tm_ * tn_;
    if (tile <= kWorkgroupSize) {
      exec.grid.push_back(ir::Dim::of(kWorkgroupSize / tile));
      exec.grain = 1;
    } else {
      exec.grain = tile / kWorkgroupSize;
    }
  }

  ElementLowering &el_;
  KernelBuilder &b_;
  const ir::Graph &g_;
  LowerOptions opts_;
  std::vector<int> anchors_;
  ir::Shape out_, batch_;
  ir::Dim m_, k_;
  int widest_ = 0; // the sibling with the most columns
  bool kContiguous_ = false;
  bool gemv_ = false;       // few rows: the invocations spread over K
  bool separable_ = false;  // no stored value needs two siblings
  bool perSibling_ = false; // each workgroup computes one sibling's tile
  bool spare_ = false;      // the grid may count workgroups past the last tile
  int64_t halfRope_ = 0;    // a half-mode rope's row length D, when tiles take half rows
  int sibling_ = -1;        // which, when perSibling_
  int64_t rg_ = 1, cg_ = 1, ks_ = 1, vn_ = 1, vk_ = 1, unroll_ = 1, tm_ = 1, tn_ = 1;
  int rm_ = 1;
  // K split across workgroups: splits of kChunk_ k each; the workgroup's split and tile
  // (of tilesPerSplit()), the shared array that tells it whether it finishes the tile,
  // and the kernel buffers of the splits' sums and of each tile's count of them.
  int64_t splits_ = 1, kChunk_ = 0;
  int split_ = -1, tileId_ = -1, last_ = -1, partials_ = -1, counters_ = -1;
  int valid_ = -1, bi_ = -1, m0_ = -1, n0_ = -1, lane_ = -1;
  int ks_id_ = -1, cg_id_ = -1, rg_id_ = -1;
  std::vector<int> batchCoords_;
  std::vector<std::vector<int>> acc_;
  // The tensor-core tile: shared slabs' row distances and sizes, the invocation's lane
  // in its subgroup, the subgroup's first row and column in the tile and its part of
  // the scratch array.
  int64_t aStride_ = 0, bStride_ = 0, aSlab_ = 0, bSlab_ = 0, fragsN_ = 0, stages_ = 2;
  int warpLane_ = -1, warpRow_ = -1, warpCol_ = -1, scratch_ = -1;
  // Where the tile takes warpgroup products (wg_): k per step, fragments of 16 x 16 a
  // subgroup holds down the rows (kMatFragsM, or 1 in a warpgroup's tile), and the
  // invocation's warpgroup.
  bool wg_ = false;
  int64_t step_ = kMatTileK, fragsM_ = kMatFragsM;
  int warpgroup_ = -1;
};

} // namespace

std::vector<int> matmulOperandCoords(ElementLowering &el, int id, bool transpose,
                                     const std::vector<int> &batch, int row, int col) {
  const ir::Shape &s = el.graph().typeOf(id).shape;
  size_t rank = s.size(), lead = batch.size() - (rank - 2);
  std::vector<int> coords;
  for (size_t i = 0; i + 2 < rank; ++i)
    coords.push_back(s[i].isStatic() && s[i].offset == 1 ? el.b().constI(0) : batch[lead + i]);
  coords.push_back(transpose ? col : row);
  coords.push_back(transpose ? row : col);
  return coords;
}

Status lowerContractionKernel(ElementLowering &el, const KernelStores &stores,
                              const std::vector<int> &anchors, const LowerOptions &opts,
                              const AddScratch &scratch, runtime::ExecKernel &exec) {
  return ContractionLowering(el, anchors, opts).run(stores, scratch, exec);
}

} // namespace kiln::compiler
