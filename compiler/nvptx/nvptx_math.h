// f32 math functions (exp, exp to 16-bit precision, log, sin, cos, tanh, pow, erf) built as LLVM IR
// for the NVPTX emitter, so kernels need no libdevice at run time.
#pragma once

#include "llvm/IR/Function.h"
#include "llvm/IR/Module.h"

namespace kiln::compiler::nvptx {

enum class MathFn { Exp, Exp16, Log, Sin, Cos, Tanh, Pow, Erf };

// The internal function computing `fn` on f32 (two operands for Pow), defined in `m` on first
// use.
llvm::Function *getMathFunction(llvm::Module &m, MathFn fn);

} // namespace kiln::compiler::nvptx
