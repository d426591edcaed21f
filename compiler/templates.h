// The kernel templates: each lowers one kernel of a fused graph through an
// ElementLowering, storing the values that leave the kernel.
#pragma once

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

} // namespace kiln::compiler
