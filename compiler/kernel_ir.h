// The SIMT kernel IR: what lowering produces and every emitter (nvptx, spirv) reads.
//
// A kernel is run by a 1-D grid of invocations, kWorkgroupSize per workgroup. Its body
// is a flat list of SSA instructions; an instruction's id is its index. The body runs
// for invocations whose guard value is true; instructions before `guardEnd` are the
// prologue that computes the guard (every invocation runs them), the rest run only
// under the guard. Stores appear only after the prologue. A kernel without a guard
// (guard -1, guardEnd 0) runs the whole body in every invocation.
//
// Structured control flow: LoopBegin ... LoopEnd and IfBegin ... IfEnd nest properly; a
// value defined inside a region is used only inside it (values cross region boundaries
// through variables: VarNew, VarGet, VarSet). Barrier waits for every invocation of the
// workgroup and makes its shared-memory writes visible; it may appear only where every
// invocation of the workgroup arrives: never under a guard, and inside loops and ifs
// whose conditions the lowering keeps the same across the workgroup.
//
// Shared memory: arrays of `Kernel::shared`, one copy per workgroup, read and written
// by SharedLoad and SharedStore (`buffer` names the array), and by the matrix ops.
//
// Matrices: a subgroup of 32 invocations holds a 16 x 16 matrix together (MatA: rows
// by k of f16, MatB: k by columns of f16, MatC: f32 sums), each invocation a part that
// the target chooses (tensor-core fragments on PTX). Every invocation of the subgroup
// executes a matrix op, in control flow the whole workgroup takes alike, and only on
// targets whose subgroups have 32 invocations (the lowering uses them only where the
// compile options say the target has matrix units). MatA and MatB values come straight
// from MatLoad or MatLoadT; MatC values live across loop iterations in variables.
//
// Warpgroup matrices (sm_90a's wgmma; the lowering uses them only where the compile
// options say the target has them): the 128 invocations of four consecutive subgroups,
// the first a multiple of four, hold a 64 x 128 tile of f32 sums together (MatW),
// subgroup w of them its rows [16w, 16w + 16). A product reads both factors straight from
// shared memory, named by descriptors (MatDesc), and runs asynchronously: WgMulAdd's
// result may be read (WgStore, or a WgMulAdd of another batch) only after a WgWait that
// covers its batch, and the shared memory it reads may be written only then. Every
// invocation of the four subgroups executes these ops alike, as for the matrix ops.
//
// Parameters: buffers 0..N-1 (storage elements of `MemType`), then the dims info
// buffer (int32 values of the graph's symbolic dims, in declaration order).
//   SPIR-V: descriptor set 0, binding i for buffer i, binding N for the dims buffer.
//   PTX:    one `.param .u64` global pointer per buffer, then the dims pointer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/support.h"

namespace kiln::compiler {

constexpr int kWorkgroupSize = 256;

// Every buffer a kernel binds starts at a multiple of this many bytes (runtimes allocate
// so; the memory plan's arena offsets are multiples of 256), and no two of a kernel's
// buffers overlap (the lowering binds a buffer once; values a kernel reads are never
// the ones it writes).
constexpr int kBufferAlignment = 16;

// Types of values computed in registers.
enum class KType : uint8_t { Bool, I32, F32, MatA, MatB, MatC, MatW, MatDesc };

// Element types of buffers in memory. F16 and BF16 load to and store from F32;
// I32 loads and stores I32.
enum class MemType : uint8_t { F32, F16, BF16, I32 };

enum class KOp : uint8_t {
  // Leaves.
  GlobalId, // I32: the invocation's global id (x).
  LocalId,  // I32: the invocation's index in its workgroup, [0, kWorkgroupSize).
  GroupId,  // I32: the workgroup's index; GlobalId = GroupId * kWorkgroupSize + LocalId.
  Dim,      // I32: value of symbolic dim `imm` read from the dims buffer.
  ConstI,   // I32 `imm`.
  ConstF,   // F32 `fimm` (exactly representable in f32; NaN and infinities allowed).
  ConstB,   // Bool `imm != 0`.
  // Integer arithmetic on I32 (operands non-negative for IDiv and IRem).
  IAdd,
  ISub,
  IMul,
  IDiv,
  IRem,
  ILt, // Bool: a < b (signed).
  // Float arithmetic on F32, IEEE semantics.
  FAdd,
  FSub,
  FMul,
  FDiv,
  FNeg,
  FAbs,
  FMax,
  FMin, // NaN-propagating: NaN if either operand is NaN.
  FSqrt,
  FRsqrt,
  FExp,
  FExp16, // exp to the precision of a 16-bit float: relative error below 2^-16, for values
          // the graph holds in f16 or bf16 (a fraction of their rounding step)
  FLog,
  FSin,
  FCos,
  FTanh,
  FPow,
  FErf,
  RoundF16,  // F32: the nearest f16 value (ties to even; NaN stays NaN), as an f32
  RoundBF16, // F32: the nearest bf16 value (ties to even; NaN stays NaN), as an f32
  FLt,
  FLe,
  FEq,
  FNe, // Bool; ordered compares except FNe (true when unordered).
  // Logic.
  And,
  Or,
  Not,    // Bool.
  Select, // args: cond (Bool), a, b of one type.
  Cast,   // to `type` from the operand's type: I32<->F32 (F32->I32 truncates), Bool->I32/F32
          // (0 or 1), I32/F32->Bool (!= 0).
  // Memory: `buffer` names the parameter; args[0] is the element index (I32).
  Load,  // type: the buffer's register type.
  Store, // args: index, value; no result.
  // Device-scope atomics and ordering (PTX; the SPIR-V emitter refuses them), for
  // workgroups that pass sums to the one that finishes a tile last.
  AtomicAdd, // I32: the element's value before adding args[1]; `buffer` is an I32 buffer,
             // args[0] the index. Relaxed: orders nothing by itself.
  Fence,     // no operands, no result: the invocation's buffer accesses before it happen,
             // for every invocation of the device, before those after it.
  // Shared memory: `buffer` names the array of Kernel::shared; args[0] is the index.
  SharedLoad,  // type: the array's element type.
  SharedStore, // args: index, value; no result.
  Barrier,     // no operands, no result.
  // Matrices (see the file comment); `buffer` names a shared array, args[0] is the index
  // of the matrix's element (0, 0) in it, and `imm` the distance between its rows. The
  // first element sits at a multiple of 32 bytes and rows lie a multiple of 16 bytes
  // apart (tensor-core loads move aligned 32-byte pieces).
  MatZero,   // MatC of zeros.
  MatLoad,   // MatA or MatB from an f16 array: element (r, c) at index + r * imm + c.
  MatLoadT,  // MatA or MatB from an f16 array, transposed: (r, c) at index + c * imm + r.
  MatStore,  // args: index, MatC value; into an f32 array, (r, c) at index + r * imm + c.
  MatMulAdd, // MatC: args a (MatA), b (MatB), c (MatC): a * b + c, sums in f32.
  // Warpgroup matrices (see the file comment; SPIR-V refuses them). A descriptor names a
  // matrix of f16 in shared array `buffer` from element args[0] (a multiple of 8) made of
  // core matrices, each 8 rows of 8 elements in 128 consecutive bytes; its rows run along
  // the matrix's M or N (K-major) or along K (MN-major), and `imm` holds the bytes between
  // core matrices along K in its low 32 bits and along M or N in its high 32 (multiples
  // of 16, below 2^18). So in a K-major A (64 x 16), element (m, k) lies at byte
  // (m / 8) * high + (k / 8) * low + (m % 8) * 16 + (k % 8) * 2; in an MN-major B (16 x
  // 128), element (k, n) at (n / 8) * high + (k / 8) * low + (k % 8) * 16 + (n % 8) * 2.
  WgZero,     // MatW of zeros.
  WgDesc,     // MatDesc (see above).
  WgMulAdd,   // MatW: args a (MatDesc, K-major 64 x 16), b (MatDesc, 16 x 128: MN-major where
              // `imm` is 1, else K-major), c (MatW): a * b + c, sums in f32; starts the
              // product in the current batch.
  WgFence,    // no operands, no result: orders the invocation's register accesses before
              // it before the products after it (before each batch's first WgMulAdd).
  WgCommit,   // closes the batch of products started since the last.
  WgWait,     // waits until at most `imm` of the invocation's batches are unfinished.
  WgStore,    // args: index, MatW value: columns [16 imm, 16 imm + 16) of the subgroup's
              // 16 rows, into an f32 array: (r, c) at index + r * 16 + c.
  ProxyFence, // no operands, no result: the invocation's shared-memory writes before it
              // (stores and finished copies) become visible to the products after it.
  // Asynchronous copies (tensor-core targets; SPIR-V refuses them): CopyAsync starts a
  // copy of 16 bytes from element args[0] of buffer `buffer` to element args[1] of
  // shared array `imm` (of the buffer's element type; both at multiples of 16 bytes),
  // or of zeros where args[2] (Bool) is false. CopyCommit closes the group of this
  // invocation's copies started since the last, and CopyWait waits until at most `imm`
  // of its groups are unfinished; a Barrier after the wait makes them visible to the
  // workgroup.
  CopyAsync,
  CopyCommit,
  CopyWait,
  // Subgroups: the invocations of a workgroup form subgroups of SubgroupSize consecutive
  // LocalIds (every target kiln knows does this for 1-D workgroups), which run together.
  SubgroupSize, // I32: invocations per subgroup, a power of two (32 on NVIDIA); uniform.
  ShuffleXor,   // F32: args[0] of the invocation whose index in the subgroup is this
                // one's XOR `imm`. Every invocation of the subgroup must execute it, and
                // `imm` must be below SubgroupSize.
  // Variables: a VarNew is a variable of its initial value's type (its id names it).
  VarNew, // args: initial value.
  VarGet, // args: variable; type: the variable's.
  VarSet, // args: variable, value; no result.
  // Regions.
  LoopBegin, // I32 result: the induction variable i; args: begin, end, step (> 0).
             // The body runs for i = begin, begin + step, ... while i < end.
  LoopEnd,   // closes the innermost open LoopBegin; no result.
  IfBegin,   // args: condition (Bool); the body runs where it holds. No result.
  IfEnd,     // closes the innermost open IfBegin; no result.
};

// Whether an instruction produces no value.
inline bool hasNoResult(KOp op) {
  return op == KOp::Store || op == KOp::SharedStore || op == KOp::Barrier || op == KOp::VarSet ||
         op == KOp::LoopEnd || op == KOp::IfBegin || op == KOp::IfEnd || op == KOp::MatStore ||
         op == KOp::CopyAsync || op == KOp::CopyCommit || op == KOp::CopyWait || op == KOp::Fence ||
         op == KOp::WgFence || op == KOp::WgCommit || op == KOp::WgWait || op == KOp::WgStore ||
         op == KOp::ProxyFence;
}

// Whether an op is one of the warpgroup matrix ops (sm_90a).
inline bool isWarpgroupOp(KOp op) {
  return op == KOp::WgZero || op == KOp::WgDesc || op == KOp::WgMulAdd || op == KOp::WgFence ||
         op == KOp::WgCommit || op == KOp::WgWait || op == KOp::WgStore || op == KOp::ProxyFence;
}

struct KInst {
  KOp op;
  KType type = KType::I32; // result type (unused for Store)
  std::vector<int> args;   // ids of earlier instructions
  int64_t imm = 0;
  float fimm = 0;
  int buffer = -1;
};

struct KBuffer {
  std::string name; // for comments and debugging only
  MemType elem = MemType::F32;
  bool written = false; // read-only when false
};

// A shared-memory array (per workgroup). An f16 or bf16 array loads to and stores from
// F32 like a buffer of its type (a store rounds to nearest even).
struct KShared {
  MemType elem = MemType::F32;
  int size = 0; // elements
};

struct Kernel {
  std::string name; // a valid identifier in PTX and SPIR-V
  std::vector<KBuffer> buffers;
  std::vector<KShared> shared;
  int numDims = 0; // entries in the dims buffer
  // Workgroups that should fit on one multiprocessor at once (0: no request). PTX:
  // .minnctapersm, which bounds the registers an invocation takes; SPIR-V has no such hint.
  int resident = 0;
  std::vector<KInst> body;
  int guard = -1;   // id of a Bool instruction in the prologue
  int guardEnd = 0; // body[0, guardEnd) is the prologue
};

// Builds a kernel body, keeping ids; the lowering uses it and so do the emitter tests.
class KernelBuilder {
public:
  explicit KernelBuilder(Kernel &k) : k_(k) {}
  int emit(KInst inst) {
    k_.body.push_back(std::move(inst));
    return static_cast<int>(k_.body.size()) - 1;
  }
  int globalId() { return emit({KOp::GlobalId, KType::I32}); }
  int dim(int index) { return emit({KOp::Dim, KType::I32, {}, index}); }
  int constI(int64_t v) { return emit({KOp::ConstI, KType::I32, {}, v}); }
  int constF(float v) { return emit({KOp::ConstF, KType::F32, {}, 0, v}); }
  int op(KOp op, KType t, std::vector<int> args) { return emit({op, t, std::move(args)}); }
  int load(int buffer, KType t, int index) { return emit({KOp::Load, t, {index}, 0, 0, buffer}); }
  void store(int buffer, int index, int value) {
    emit({KOp::Store, KType::I32, {index, value}, 0, 0, buffer});
  }
  int atomicAdd(int buffer, int index, int value) {
    return emit({KOp::AtomicAdd, KType::I32, {index, value}, 0, 0, buffer});
  }
  void fence() { emit({KOp::Fence, KType::I32}); }
  int localId() { return emit({KOp::LocalId, KType::I32}); }
  int subgroupSize() { return emit({KOp::SubgroupSize, KType::I32}); }
  int shuffleXor(int value, int mask) { return emit({KOp::ShuffleXor, KType::F32, {value}, mask}); }
  int groupId() { return emit({KOp::GroupId, KType::I32}); }
  int sharedLoad(int array, KType t, int index) {
    return emit({KOp::SharedLoad, t, {index}, 0, 0, array});
  }
  void sharedStore(int array, int index, int value) {
    emit({KOp::SharedStore, KType::I32, {index, value}, 0, 0, array});
  }
  void barrier() { emit({KOp::Barrier, KType::I32}); }
  int matZero() { return emit({KOp::MatZero, KType::MatC}); }
  int matLoad(KType t, int array, int index, int64_t stride, bool transposed) {
    return emit({transposed ? KOp::MatLoadT : KOp::MatLoad, t, {index}, stride, 0, array});
  }
  void matStore(int array, int index, int64_t stride, int value) {
    emit({KOp::MatStore, KType::I32, {index, value}, stride, 0, array});
  }
  int matMulAdd(int a, int b, int c) { return emit({KOp::MatMulAdd, KType::MatC, {a, b, c}}); }
  int wgZero() { return emit({KOp::WgZero, KType::MatW}); }
  int wgDesc(int array, int index, int64_t alongK, int64_t alongMN) {
    return emit({KOp::WgDesc, KType::MatDesc, {index}, alongK | alongMN << 32, 0, array});
  }
  int wgMulAdd(int a, int b, int c, bool bMNMajor) {
    return emit({KOp::WgMulAdd, KType::MatW, {a, b, c}, bMNMajor ? 1 : 0});
  }
  void wgStore(int array, int index, int value, int64_t block) {
    emit({KOp::WgStore, KType::I32, {index, value}, block, 0, array});
  }
  void copyAsync(int buffer, int index, int array, int sharedIndex, int inside) {
    emit({KOp::CopyAsync, KType::I32, {index, sharedIndex, inside}, array, 0, buffer});
  }
  void copyCommit() { emit({KOp::CopyCommit, KType::I32}); }
  void copyWait(int64_t groups) { emit({KOp::CopyWait, KType::I32, {}, groups}); }
  int varNew(KType t, int init) { return emit({KOp::VarNew, t, {init}}); }
  int varGet(KType t, int var) { return emit({KOp::VarGet, t, {var}}); }
  void varSet(int var, int value) { emit({KOp::VarSet, KType::I32, {var, value}}); }
  int loopBegin(int begin, int end, int step) {
    return emit({KOp::LoopBegin, KType::I32, {begin, end, step}});
  }
  void loopEnd() { emit({KOp::LoopEnd, KType::I32}); }
  void ifBegin(int cond) { emit({KOp::IfBegin, KType::I32, {cond}}); }
  void ifEnd() { emit({KOp::IfEnd, KType::I32}); }
  // Ends the prologue: instructions after this run only where `cond` holds.
  void guard(int cond) {
    k_.guard = cond;
    k_.guardEnd = static_cast<int>(k_.body.size());
  }

private:
  Kernel &k_;
};

// Bytes of one element in memory.
inline int memTypeBytes(MemType m) { return m == MemType::F16 || m == MemType::BF16 ? 2 : 4; }

// Register type of a buffer's elements.
inline KType registerType(MemType m) { return m == MemType::I32 ? KType::I32 : KType::F32; }

// Where each shared array starts, in bytes, when they lie one after another in their
// order, each on a 16-byte boundary; and the bytes they take so.
std::vector<int64_t> sharedLayout(const Kernel &k);
int64_t sharedBytes(const Kernel &k);

// Whether a kernel body multiplies on matrix units (mma.sync or warpgroup products).
bool usesMatrixUnits(const std::vector<KInst> &body);

// Low zero bits (at most kMaxZeroBits) that every value of I32 instruction `v` of `body`
// has, from constants through adds, multiplies, remainders, divisions by powers of two,
// selects and loop counters (i32 wrapping keeps low bits); 0 where nothing is known.
// `memo` (per instruction, -1 where not yet found; grown as the body grows) keeps them.
constexpr int kMaxZeroBits = 16;
int lowZeroBits(const std::vector<KInst> &body, int v, std::vector<int> &memo);

// Checks the kernel's own invariants (ids defined before use, types agree, stores after
// the prologue); the emitters may assume a verified kernel.
Status verifyKernel(const Kernel &k);

// Merges each pure instruction that repeats one defined earlier in an enclosing region
// into it, and drops pure instructions nothing uses, renumbering the rest: templates
// emit index arithmetic freely and leave the sharing here. Code generation time grows
// faster than the kernel's size.
void compactKernel(Kernel &k);

// Text form for debugging and lit tests (kiln-opt --emit=kernel-ir).
std::string printKernel(const Kernel &k);

} // namespace kiln::compiler
