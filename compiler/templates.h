// The kernel templates: each lowers one kernel of a fused graph through an
// ElementLowering, storing the values that leave the kernel.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "compiler/element_lowering.h"
#include "compiler/lower.h"
#include "runtime/executable.h"

namespace kiln::compiler {

// (node, kernel buffer): the node's value is stored to the buffer, contiguous and
// row-major in the node's shape.
using KernelStores = std::vector<std::pair<int, int>>;

// The least power of two at or above `v` (1 for v <= 1).
inline int64_t nextPow2(int64_t v) {
  int64_t p = 1;
  while (p < v)
    p *= 2;
  return p;
}

// Whether two shapes have as many elements for every value of the dims.
bool sameSize(const ir::Shape &a, const ir::Shape &b);

// Every stored value is pointwise in one iteration space: one invocation per element of
// the first stored value (the others have as many elements, in the same order).
Status lowerPointwiseKernel(ElementLowering &el, const KernelStores &stores,
                            runtime::ExecKernel &exec);

// One workgroup per row of `anchor`'s input (a reduction over one axis, softmax,
// rms_norm or layer_norm), with its pointwise prologue and epilogue.
Status lowerRowKernel(ElementLowering &el, const KernelStores &stores, int anchor,
                      runtime::ExecKernel &exec);

// Combines `v` by `op` over `width` consecutive invocations of the workgroup (a power of
// two up to the workgroup's size; `t` is this invocation's place among them), leaving the
// same bits in each. Within a subgroup, a butterfly of shuffles; groups wider than a
// subgroup then meet in shared array `shared` (f32) at [region, region + 256), where every
// invocation folds its group's subgroup results in order. The subgroup size is known only
// on the device (32 on NVIDIA, 4 to 64 elsewhere), so both steps test it; the tests are
// uniform, and PTX folds them. Calls that take turns between two regions need no barrier
// of their own between them: the next call's orders this one's reads before the one after
// it writes.
int combineLanes(ElementLowering &el, KOp op, int v, int64_t width, int t, int shared,
                 int64_t region);

// Coordinates in matmul operand `id` ([batch..., rows, cols], with leading batch dims
// broadcast) of its element (row, col) of the logical, untransposed matrix, for the
// result's batch coordinates `batch`.
std::vector<int> matmulOperandCoords(ElementLowering &el, int id, bool transpose,
                                     const std::vector<int> &batch, int row, int col);

// Adds memory of the kernel's own, which holds no value of the graph (a Temp or a Zeroed
// buffer of `type`), as a buffer the kernel writes; returns its kernel buffer index.
using AddScratch =
    std::function<int(const std::string &name, const ir::TensorType &type, runtime::BufferRole)>;

// Sibling matmuls that read one A operand (`anchors`, with equal batch dims and rows),
// with their pointwise epilogue (rope and insert_slice included): a tile of every
// sibling's result per workgroup (or, for a GEMV, per group of workgroups that split K
// and pass their sums through scratch memory).
Status lowerContractionKernel(ElementLowering &el, const KernelStores &stores,
                              const std::vector<int> &anchors, const LowerOptions &opts,
                              const AddScratch &scratch, runtime::ExecKernel &exec);

// Decode attention: softmax(f(q . K)) . V for one query row per batch index, `scores`
// and `output` the two matmuls and `softmax` between them (f pointwise on the scores),
// with the output's pointwise epilogue; the keys split across workgroups, whose partial
// sums the last of each batch index's workgroups combines (flash-decoding).
Status lowerAttentionKernel(ElementLowering &el, const KernelStores &stores, int scores,
                            int softmax, int output, const AddScratch &scratch,
                            runtime::ExecKernel &exec);

} // namespace kiln::compiler
