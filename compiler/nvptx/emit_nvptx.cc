// PTX emitter: kernel IR to LLVM IR, optimised at O3, then PTX through LLVM's NVPTX back end.
#include "compiler/nvptx/emit_nvptx.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "compiler/nvptx/nvptx_math.h"
#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/SmallString.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/InlineAsm.h"
#include "llvm/IR/IntrinsicsNVPTX.h"
#include "llvm/IR/LLVMContext.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Metadata.h"
#include "llvm/IR/Module.h"
#include "llvm/IR/Verifier.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/StringSaver.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"

namespace kiln::compiler {
namespace {

constexpr const char *kTriple = "nvptx64-nvidia-cuda";
// PTX ISA 7.8 (CUDA 11.8) is the first that knows sm_89 and sm_90; the oldest ISA keeps the
// oldest drivers able to JIT the module, and max.NaN (FMax/FMin) needs only 7.0.
constexpr const char *kPtxFeatures = "+ptx78";
constexpr std::array<std::string_view, 5> kArchs = {"sm_80", "sm_86", "sm_87", "sm_89", "sm_90"};

// KILN_LLVM_ARGS holds LLVM's own command-line options (space-separated, as llc takes
// them: "-disable-lsr", say) for comparing code generation choices on a GPU without a
// rebuild. They are read once, by the first kernel a process emits; an option LLVM does
// not know fails that and every later emission with LLVM's message.
Status initNvptxTarget() {
  static std::once_flag once;
  static std::string argsError;
  std::call_once(once, [] {
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
    const char *args = std::getenv("KILN_LLVM_ARGS");
    if (!args)
      return;
    llvm::BumpPtrAllocator alloc;
    llvm::StringSaver saver(alloc);
    llvm::SmallVector<const char *, 8> argv = {"KILN_LLVM_ARGS"};
    llvm::cl::TokenizeGNUCommandLine(args, saver, argv);
    std::string message;
    llvm::raw_string_ostream os(message);
    if (!llvm::cl::ParseCommandLineOptions(static_cast<int>(argv.size()), argv.data(), "", &os))
      argsError = message.substr(0, std::min(message.find('\n'), message.find("  Try:")));
  });
  return argsError.empty() ? Status::ok() : makeError(argsError);
}

class KernelEmitter {
public:
  KernelEmitter(const Kernel &k, llvm::Module &m) : k_(k), m_(m), ctx_(m.getContext()), b_(ctx_) {}

  void emit() {
    llvm::Type *ptr = llvm::PointerType::get(ctx_, 1);
    std::vector<llvm::Type *> params(k_.buffers.size() + 1, ptr);
    fn_ = llvm::Function::Create(llvm::FunctionType::get(b_.getVoidTy(), params, false),
                                 llvm::GlobalValue::ExternalLinkage, k_.name, m_);
    fn_->setCallingConv(llvm::CallingConv::PTX_Kernel);
    for (size_t i = 0; i < k_.buffers.size(); ++i) {
      if (!k_.buffers[i].written)
        fn_->addParamAttr(static_cast<unsigned>(i), llvm::Attribute::ReadOnly);
      // Buffers start on kBufferAlignment boundaries and never overlap (the kernel IR's
      // contract), so consecutive elements at a multiple of four can move as one vector.
      fn_->addParamAttr(static_cast<unsigned>(i),
                        llvm::Attribute::getWithAlignment(ctx_, llvm::Align(kBufferAlignment)));
      fn_->addParamAttr(static_cast<unsigned>(i), llvm::Attribute::NoAlias);
    }
    annotate("kernel", 1);
    annotate("maxntidx", kWorkgroupSize);
    if (k_.resident > 0)
      annotate("minctasm", k_.resident);

    declareShared();
    auto *entry = llvm::BasicBlock::Create(ctx_, "entry", fn_);
    vals_.assign(k_.body.size(), nullptr);
    findZeroBits();
    findVectorLoads();
    vectors_.assign(k_.body.size(), nullptr);
    b_.SetInsertPoint(entry);
    int n = static_cast<int>(k_.body.size());
    if (k_.guard < 0) {
      for (int id = 0; id < n; ++id)
        vals_[id] = emitInst(k_.body[id]);
      b_.CreateRetVoid();
      return;
    }
    auto *body = llvm::BasicBlock::Create(ctx_, "body", fn_);
    auto *exit = llvm::BasicBlock::Create(ctx_, "exit", fn_);
    for (int id = 0; id < k_.guardEnd; ++id)
      vals_[id] = emitInst(k_.body[id]);
    b_.CreateCondBr(vals_[k_.guard], body, exit);
    b_.SetInsertPoint(body);
    for (int id = k_.guardEnd; id < n; ++id)
      vals_[id] = emitInst(k_.body[id]);
    b_.CreateRetVoid();
    b_.SetInsertPoint(exit);
    b_.CreateRetVoid();
  }

private:
  // NVPTX in LLVM 19 reads kernel-ness and launch bounds from !nvvm.annotations.
  void annotate(const char *key, int value) {
    llvm::Metadata *ops[] = {llvm::ValueAsMetadata::get(fn_), llvm::MDString::get(ctx_, key),
                             llvm::ConstantAsMetadata::get(b_.getInt32(value))};
    m_.getOrInsertNamedMetadata("nvvm.annotations")->addOperand(llvm::MDNode::get(ctx_, ops));
  }

  llvm::Value *arg(const KInst &in, int i) { return vals_[in.args[i]]; }

  // How elements of `m` sit in memory: bf16 as the i16 of its bits.
  llvm::Type *memType(MemType m) {
    switch (m) {
    case MemType::F32:
      return b_.getFloatTy();
    case MemType::I32:
      return b_.getInt32Ty();
    case MemType::F16:
      return b_.getHalfTy();
    case MemType::BF16:
      return b_.getInt16Ty();
    }
    return nullptr;
  }

  // The shared arrays: an addrspace(3) global each, one per workgroup; or, where they
  // take more than a kernel may declare statically, places in the launch's dynamic
  // shared memory (one external array, each at its offset in sharedLayout).
  void declareShared() {
    auto global = [&](llvm::Type *type, llvm::GlobalValue::LinkageTypes linkage,
                      llvm::Constant *init, const char *name) {
      auto *g = new llvm::GlobalVariable(m_, type, false, linkage, init, name, nullptr,
                                         llvm::GlobalValue::NotThreadLocal, 3);
      g->setAlignment(llvm::Align(16));
      return g;
    };
    if (dynamicSharedBytes(k_) > 0) {
      auto *type = llvm::ArrayType::get(b_.getInt8Ty(), 0);
      dynamicShared_ = global(type, llvm::GlobalValue::ExternalLinkage, nullptr, "dynamic_shared");
      sharedOffsets_ = sharedLayout(k_);
      return;
    }
    for (const KShared &s : k_.shared) {
      auto *type = llvm::ArrayType::get(memType(s.elem), static_cast<uint64_t>(s.size));
      shared_.push_back(
          global(type, llvm::GlobalValue::InternalLinkage, llvm::UndefValue::get(type), "shared"));
    }
  }

  llvm::Value *sharedPtr(const KInst &in) { return sharedPtr(in.buffer, arg(in, 0)); }
  llvm::Value *sharedPtr(int array, llvm::Value *index) {
    if (dynamicShared_) {
      llvm::Value *base = b_.CreateConstInBoundsGEP1_64(
          b_.getInt8Ty(), dynamicShared_, static_cast<uint64_t>(sharedOffsets_[array]));
      return b_.CreateInBoundsGEP(memType(k_.shared[array].elem), base, index);
    }
    llvm::GlobalVariable *g = shared_[array];
    return b_.CreateInBoundsGEP(g->getValueType(), g, {b_.getInt32(0), index});
  }

  // A shared array's element as a register value, and back (see load and store).
  llvm::Value *sharedLoad(const KInst &in) {
    MemType m = k_.shared[in.buffer].elem;
    llvm::Value *v =
        b_.CreateAlignedLoad(memType(m), sharedPtr(in), alignment(in, memTypeBytes(m)));
    return toRegister(m, v);
  }
  void sharedStore(const KInst &in) {
    MemType m = k_.shared[in.buffer].elem;
    b_.CreateAlignedStore(toMemory(m, arg(in, 1)), sharedPtr(in), alignment(in, memTypeBytes(m)));
  }
  // (Of one element or of a vector of them.)
  llvm::Value *toRegister(MemType m, llvm::Value *v) {
    if (m == MemType::F16)
      return b_.CreateFPExt(v, v->getType()->getWithNewType(b_.getFloatTy()));
    return m == MemType::BF16 ? fromBf16(v) : v;
  }
  llvm::Value *toMemory(MemType m, llvm::Value *v) {
    if (m == MemType::F16)
      return b_.CreateFPTrunc(v, b_.getHalfTy());
    return m == MemType::BF16 ? toBf16(v) : v;
  }

  // Matrices are wmma fragments of m16n16k16: eight <2 x half> registers per invocation
  // for a factor, eight floats for sums. A product's layouts are its factors' loads'.
  llvm::Type *fragmentType(KType t) {
    llvm::Type *part =
        t == KType::MatC ? b_.getFloatTy() : llvm::FixedVectorType::get(b_.getHalfTy(), 2);
    return llvm::StructType::get(ctx_, std::vector<llvm::Type *>(8, part));
  }

  llvm::Value *matLoad(const KInst &in) {
    bool a = in.type == KType::MatA, rows = in.op == KOp::MatLoad;
    llvm::Intrinsic::ID id =
        a ? (rows ? llvm::Intrinsic::nvvm_wmma_m16n16k16_load_a_f16_row_stride
                  : llvm::Intrinsic::nvvm_wmma_m16n16k16_load_a_f16_col_stride)
          : (rows ? llvm::Intrinsic::nvvm_wmma_m16n16k16_load_b_f16_row_stride
                  : llvm::Intrinsic::nvvm_wmma_m16n16k16_load_b_f16_col_stride);
    llvm::Value *p = sharedPtr(in);
    return b_.CreateIntrinsic(id, {p->getType()}, {p, b_.getInt32(static_cast<uint32_t>(in.imm))});
  }

  void matStore(const KInst &in) {
    llvm::Value *p = sharedPtr(in);
    std::vector<llvm::Value *> args{p};
    for (unsigned i = 0; i < 8; ++i)
      args.push_back(b_.CreateExtractValue(arg(in, 1), {i}));
    args.push_back(b_.getInt32(static_cast<uint32_t>(in.imm)));
    b_.CreateIntrinsic(llvm::Intrinsic::nvvm_wmma_m16n16k16_store_d_f32_row_stride, {p->getType()},
                       args);
  }

  llvm::Value *matMulAdd(const KInst &in) {
    bool aRows = k_.body[in.args[0]].op == KOp::MatLoad;
    bool bRows = k_.body[in.args[1]].op == KOp::MatLoad;
    llvm::Intrinsic::ID id =
        aRows ? (bRows ? llvm::Intrinsic::nvvm_wmma_m16n16k16_mma_row_row_f32_f32
                       : llvm::Intrinsic::nvvm_wmma_m16n16k16_mma_row_col_f32_f32)
              : (bRows ? llvm::Intrinsic::nvvm_wmma_m16n16k16_mma_col_row_f32_f32
                       : llvm::Intrinsic::nvvm_wmma_m16n16k16_mma_col_col_f32_f32);
    std::vector<llvm::Value *> args;
    for (int i = 0; i < 3; ++i)
      for (unsigned j = 0; j < 8; ++j)
        args.push_back(b_.CreateExtractValue(arg(in, i), {j}));
    return b_.CreateIntrinsic(id, {}, args);
  }

  // Warpgroup sums are the 64 f32 registers of m64n128k16's accumulator; descriptors are
  // 64-bit values.
  llvm::Type *warpgroupSumsType() {
    return llvm::StructType::get(ctx_, std::vector<llvm::Type *>(64, b_.getFloatTy()));
  }

  // An inline-assembly statement of no operands that orders memory (wgmma's and the
  // proxy fences: LLVM has no intrinsics for them in version 19).
  void asmStatement(const std::string &text) {
    auto *type = llvm::FunctionType::get(b_.getVoidTy(), false);
    b_.CreateCall(llvm::InlineAsm::get(type, text, "~{memory}", true));
  }

  // The shared-memory descriptor: the address and both distances, each in 16-byte units.
  llvm::Value *wgDesc(const KInst &in) {
    llvm::Value *addr = b_.CreatePtrToInt(sharedPtr(in), b_.getInt64Ty());
    uint64_t alongK = static_cast<uint64_t>(in.imm) & 0xffffffffu;
    uint64_t alongMN = static_cast<uint64_t>(in.imm) >> 32;
    uint64_t fixed = (alongK >> 4) << 16 | (alongMN >> 4) << 32;
    llvm::Value *start = b_.CreateLShr(b_.CreateAnd(addr, b_.getInt64(0x3ffff)), 4);
    return b_.CreateOr(start, b_.getInt64(fixed));
  }

  // wgmma.mma_async m64n128k16 with f32 sums: the sums are tied operands, so that LLVM
  // keeps each in one register from product to product.
  llvm::Value *wgMulAdd(const KInst &in) {
    llvm::Type *sums = warpgroupSumsType();
    std::string text = "{\n.reg .pred p;\nsetp.ne.b32 p, $130, 0;\n"
                       "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {";
    std::string constraints;
    for (int i = 0; i < 64; ++i) {
      text += (i == 0 ? "$" : ", $") + std::to_string(i);
      constraints += "=f,";
    }
    text += "}, $128, $129, p, 1, 1, 0, " + std::to_string(in.imm) + ";\n}";
    for (int i = 0; i < 64; ++i)
      constraints += std::to_string(i) + ",";
    constraints += "l,l,r,~{memory}";
    std::vector<llvm::Type *> types(64, b_.getFloatTy());
    types.insert(types.end(), {b_.getInt64Ty(), b_.getInt64Ty(), b_.getInt32Ty()});
    std::vector<llvm::Value *> args;
    for (unsigned i = 0; i < 64; ++i)
      args.push_back(b_.CreateExtractValue(arg(in, 2), {i}));
    args.insert(args.end(), {arg(in, 0), arg(in, 1), b_.getInt32(1)});
    auto *type = llvm::FunctionType::get(sums, types, false);
    return b_.CreateCall(llvm::InlineAsm::get(type, text, constraints, true), args);
  }

  // Sums (r, c) of the subgroup's 16 rows and columns [16 imm, 16 imm + 16): invocation
  // `lane` holds, for each 8 columns t, (lane / 4, 8t + 2 (lane % 4) + {0, 1}) in sums
  // 4t and 4t + 1, and the same eight rows below in 4t + 2 and 4t + 3.
  void wgStore(const KInst &in) {
    llvm::Value *tid = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_tid_x);
    llvm::Value *row = b_.CreateLShr(b_.CreateAnd(tid, 31), 2);
    llvm::Value *col = b_.CreateShl(b_.CreateAnd(tid, 3), 1);
    llvm::Value *at = b_.CreateAdd(arg(in, 0), b_.CreateAdd(b_.CreateShl(row, 4), col));
    auto *pair = llvm::FixedVectorType::get(b_.getFloatTy(), 2);
    for (unsigned t = 0; t < 2; ++t)
      for (unsigned half = 0; half < 2; ++half) {
        unsigned first = 4 * (2 * static_cast<unsigned>(in.imm) + t) + 2 * half;
        llvm::Value *v = llvm::PoisonValue::get(pair);
        for (unsigned e = 0; e < 2; ++e)
          v = b_.CreateInsertElement(v, b_.CreateExtractValue(arg(in, 1), {first + e}), e);
        llvm::Value *index = b_.CreateAdd(at, b_.getInt32(8 * t + 128 * half));
        b_.CreateAlignedStore(v, sharedPtr(in.buffer, index), llvm::Align(8));
      }
  }

  llvm::Type *llvmType(KType t) {
    switch (t) {
    case KType::Bool:
      return b_.getInt1Ty();
    case KType::I32:
      return b_.getInt32Ty();
    case KType::F32:
      return b_.getFloatTy();
    case KType::MatA:
    case KType::MatB:
    case KType::MatC:
      return fragmentType(t);
    case KType::MatW:
      return warpgroupSumsType();
    case KType::MatDesc:
      return b_.getInt64Ty();
    }
    return nullptr;
  }

  // A variable: a stack slot made at the function's entry (mem2reg turns it into
  // registers), holding `init` from here on.
  llvm::Value *variable(llvm::Type *type, llvm::Value *init) {
    llvm::BasicBlock &entry = fn_->getEntryBlock();
    llvm::IRBuilder<> at(&entry, entry.begin());
    llvm::Value *slot = at.CreateAlloca(type);
    b_.CreateStore(init, slot);
    return slot;
  }

  // Regions open at the current instruction, innermost last.
  struct Region {
    llvm::BasicBlock *header = nullptr, *exit = nullptr; // exit: a loop's or an if's merge
    llvm::Value *counter = nullptr, *step = nullptr;     // a loop's induction slot and step
  };

  llvm::Value *beginLoop(const KInst &in) {
    Region r;
    r.counter = variable(b_.getInt32Ty(), arg(in, 0));
    r.step = arg(in, 2);
    r.header = llvm::BasicBlock::Create(ctx_, "loop", fn_);
    auto *body = llvm::BasicBlock::Create(ctx_, "loop.body", fn_);
    r.exit = llvm::BasicBlock::Create(ctx_, "loop.exit", fn_);
    b_.CreateBr(r.header);
    b_.SetInsertPoint(r.header);
    llvm::Value *i = b_.CreateLoad(b_.getInt32Ty(), r.counter);
    b_.CreateCondBr(b_.CreateICmpSLT(i, arg(in, 1)), body, r.exit);
    b_.SetInsertPoint(body);
    regions_.push_back(r);
    return i;
  }

  void endLoop() {
    Region r = regions_.back();
    regions_.pop_back();
    llvm::Value *i = b_.CreateLoad(b_.getInt32Ty(), r.counter);
    b_.CreateStore(b_.CreateAdd(i, r.step), r.counter);
    b_.CreateBr(r.header);
    b_.SetInsertPoint(r.exit);
  }

  void beginIf(const KInst &in) {
    Region r;
    auto *then = llvm::BasicBlock::Create(ctx_, "if.then", fn_);
    r.exit = llvm::BasicBlock::Create(ctx_, "if.end", fn_);
    b_.CreateCondBr(arg(in, 0), then, r.exit);
    b_.SetInsertPoint(then);
    regions_.push_back(r);
  }

  void endIf() {
    b_.CreateBr(regions_.back().exit);
    b_.SetInsertPoint(regions_.back().exit);
    regions_.pop_back();
  }
  llvm::Value *f32(float v) { return llvm::ConstantFP::get(ctx_, llvm::APFloat(v)); }

  llvm::Value *sreg(llvm::Intrinsic::ID id) { return b_.CreateIntrinsic(id, {}, {}); }

  llvm::Value *intrinsic(llvm::Intrinsic::ID id, const KInst &in) {
    std::vector<llvm::Value *> args;
    for (size_t i = 0; i < in.args.size(); ++i)
      args.push_back(arg(in, static_cast<int>(i)));
    return b_.CreateIntrinsic(id, {b_.getFloatTy()}, args);
  }

  llvm::Value *math(nvptx::MathFn fn, const KInst &in) {
    std::vector<llvm::Value *> args;
    for (size_t i = 0; i < in.args.size(); ++i)
      args.push_back(arg(in, static_cast<int>(i)));
    return b_.CreateCall(nvptx::getMathFunction(m_, fn), args);
  }

  // Low zero bits of every value of each I32 instruction (see lowZeroBits).
  void findZeroBits() {
    zeroBits_.clear();
    for (size_t id = 0; id < k_.body.size(); ++id)
      lowZeroBits(k_.body, static_cast<int>(id), zeroBits_);
  }

  // A load's or store's element as `base + offset`: an index `base + constant` (through
  // any number of such adds: each unrolled step of a loop adds its own) addresses from
  // base's element, so that loads of base, base + 1, ... share one pointer and LLVM sees
  // them side by side (an i32 add could wrap, so it would not assume that of
  // sext(base + 1); an in-bounds index never wraps).
  std::pair<int, int64_t> address(const KInst &in) const {
    int base = in.args[0];
    int64_t offset = 0;
    for (;;) {
      const KInst &def = k_.body[base];
      if (def.op != KOp::IAdd)
        break;
      int side = k_.body[def.args[1]].op == KOp::ConstI   ? 1
                 : k_.body[def.args[0]].op == KOp::ConstI ? 0
                                                          : -1;
      if (side < 0)
        break;
      offset += k_.body[def.args[side]].imm;
      base = def.args[1 - side];
    }
    return {base, offset};
  }

  llvm::Value *elementPtr(const KInst &in, llvm::Type *elemTy) {
    auto [index, offset] = address(in);
    return elementPtr(in.buffer, index, offset, elemTy);
  }
  llvm::Value *elementPtr(int buffer, int index, int64_t offset, llvm::Type *elemTy) {
    llvm::Value *idx = b_.CreateSExt(vals_[index], b_.getInt64Ty());
    llvm::Value *p = b_.CreateInBoundsGEP(elemTy, fn_->getArg(buffer), idx);
    return offset ? b_.CreateInBoundsGEP(elemTy, p, b_.getInt64(offset)) : p;
  }

  // Loads of a read-only buffer at base + o, ..., base + o + w - 1 in one straight-line
  // stretch of the body (no loop or if starts or ends between them), w elements of at
  // most 16 bytes that base's low zero bits and o prove aligned: the first of them in
  // the body reads them all as one vector and each takes its lane. LLVM then sees one
  // load where it would see w and merge them again (the load-store vectorizer): the
  // decoder's QKV kernel reaches it as 4025 LLVM values, not 5321.
  void findVectorLoads() {
    lanes_.assign(k_.body.size(), {-1, 0, 0});
    // (stretch, buffer, base) -> offset -> load
    std::map<std::tuple<int, int, int>, std::map<int64_t, int>> runs;
    int stretch = 0;
    for (int id = 0; id < static_cast<int>(k_.body.size()); ++id) {
      const KInst &in = k_.body[id];
      if (id == k_.guardEnd || in.op == KOp::LoopBegin || in.op == KOp::LoopEnd ||
          in.op == KOp::IfBegin || in.op == KOp::IfEnd)
        ++stretch;
      if (in.op == KOp::Load && !k_.buffers[in.buffer].written) {
        auto [base, offset] = address(in);
        runs[{stretch, in.buffer, base}].emplace(offset, id);
      }
    }
    for (const auto &[key, loads] : runs) {
      int base = std::get<2>(key);
      int64_t most = 16 / memTypeBytes(k_.buffers[std::get<1>(key)].elem);
      for (auto it = loads.begin(); it != loads.end();) {
        int64_t width = most;
        auto present = [&](int64_t w) {
          if (it->first % w != 0 || zeroBits_[base] < std::countr_zero(static_cast<uint64_t>(w)))
            return false;
          for (int64_t l = 1; l < w; ++l)
            if (!loads.contains(it->first + l))
              return false;
          return true;
        };
        while (width > 1 && !present(width))
          width /= 2;
        if (width == 1) {
          ++it;
          continue;
        }
        int leader = it->second;
        for (int64_t l = 1; l < width; ++l)
          leader = std::min(leader, loads.at(it->first + l));
        for (int64_t l = 0; l < width; ++l, ++it)
          lanes_[it->second] = {leader, static_cast<int>(l), static_cast<int>(width)};
      }
    }
  }

  // The alignment an access of `bytes`-byte elements is known to have: buffers start on
  // kBufferAlignment boundaries, and the index's low zero bits say the rest. Stated on
  // the access, it lets the load-store vectorizer merge neighbours into 128-bit accesses
  // where it can no longer see the pointer's origin (after loop strength reduction).
  llvm::Align alignment(const KInst &in, int bytes) const {
    auto [index, offset] = address(in);
    int bits = zeroBits_[index] + std::countr_zero(static_cast<unsigned>(bytes));
    if (offset != 0)
      bits = std::min(bits, std::countr_zero(static_cast<uint64_t>(offset * bytes)));
    int limit = std::countr_zero(static_cast<unsigned>(kBufferAlignment));
    return llvm::Align(uint64_t{1} << std::clamp(bits, 0, limit));
  }

  llvm::Value *load(const KInst &in) {
    MemType m = k_.buffers[in.buffer].elem;
    llvm::Type *t = memType(m);
    int id = static_cast<int>(&in - k_.body.data());
    const Lane &lane = lanes_[id];
    if (lane.leader < 0)
      return toRegister(m,
                        b_.CreateAlignedLoad(t, elementPtr(in, t), alignment(in, memTypeBytes(m))));
    if (lane.leader == id) {
      auto [index, offset] = address(in);
      auto *vt = llvm::FixedVectorType::get(t, static_cast<unsigned>(lane.width));
      llvm::Value *p = elementPtr(in.buffer, index, offset - lane.lane, t);
      llvm::Align align(static_cast<uint64_t>(lane.width * memTypeBytes(m)));
      vectors_[id] = toRegister(m, b_.CreateAlignedLoad(vt, p, align));
    }
    return b_.CreateExtractElement(vectors_[lane.leader], static_cast<uint64_t>(lane.lane));
  }

  // bf16 bits (i16) to the f32 they stand for: the high half of its bits.
  llvm::Value *fromBf16(llvm::Value *bits) {
    llvm::Type *t = bits->getType();
    llvm::Value *wide = b_.CreateZExt(bits, t->getWithNewType(b_.getInt32Ty()));
    return b_.CreateBitCast(b_.CreateShl(wide, 16), t->getWithNewType(b_.getFloatTy()));
  }

  // f32 to bf16 bits, rounding to nearest even; a NaN keeps its sign and top payload bits and
  // is made quiet, since truncation alone could turn it into an infinity.
  llvm::Value *toBf16(llvm::Value *v) {
    llvm::Value *bits = b_.CreateBitCast(v, b_.getInt32Ty());
    llvm::Value *hi = b_.CreateLShr(bits, 16);
    llvm::Value *bias = b_.CreateAdd(b_.CreateAnd(hi, b_.getInt32(1)), b_.getInt32(0x7fff));
    llvm::Value *rounded = b_.CreateLShr(b_.CreateAdd(bits, bias), 16);
    llvm::Value *quiet = b_.CreateOr(hi, b_.getInt32(0x40));
    llvm::Value *h = b_.CreateSelect(b_.CreateFCmpUNO(v, v), quiet, rounded);
    return b_.CreateTrunc(h, b_.getInt16Ty());
  }

  void store(const KInst &in) {
    MemType m = k_.buffers[in.buffer].elem;
    llvm::Type *t = memType(m);
    b_.CreateAlignedStore(toMemory(m, arg(in, 1)), elementPtr(in, t),
                          alignment(in, memTypeBytes(m)));
  }

  llvm::Value *cast(const KInst &in) {
    llvm::Value *v = arg(in, 0);
    KType from = k_.body[in.args[0]].type;
    switch (in.type) {
    case KType::Bool:
      return from == KType::F32 ? b_.CreateFCmpUNE(v, f32(0.0f))
                                : b_.CreateICmpNE(v, b_.getInt32(0));
    case KType::I32:
      // The saturating form defines NaN and out-of-range inputs (plain fptosi gives poison);
      // it is what cvt.rzi.s32.f32 does anyway.
      if (from == KType::F32)
        return b_.CreateIntrinsic(llvm::Intrinsic::fptosi_sat, {b_.getInt32Ty(), b_.getFloatTy()},
                                  {v});
      return b_.CreateZExt(v, b_.getInt32Ty());
    case KType::F32:
      return from == KType::I32 ? b_.CreateSIToFP(v, b_.getFloatTy())
                                : b_.CreateUIToFP(v, b_.getFloatTy());
    case KType::MatA: // the verifier refuses casts of matrices
    case KType::MatB:
    case KType::MatC:
    case KType::MatW:
    case KType::MatDesc:
      break;
    }
    return nullptr;
  }

  llvm::Value *emitInst(const KInst &in) {
    switch (in.op) {
    case KOp::GlobalId: {
      llvm::Value *ctaid = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ctaid_x);
      llvm::Value *tid = sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_tid_x);
      return b_.CreateAdd(b_.CreateMul(ctaid, b_.getInt32(kWorkgroupSize)), tid);
    }
    case KOp::Dim: {
      llvm::Value *dims = fn_->getArg(static_cast<unsigned>(k_.buffers.size()));
      llvm::Value *p = b_.CreateInBoundsGEP(b_.getInt32Ty(), dims, b_.getInt64(in.imm));
      return b_.CreateAlignedLoad(b_.getInt32Ty(), p, llvm::Align(4));
    }
    case KOp::ConstI:
      return b_.getInt32(static_cast<uint32_t>(in.imm));
    case KOp::ConstF:
      return f32(in.fimm);
    case KOp::ConstB:
      return b_.getInt1(in.imm != 0);
    case KOp::IAdd:
      return b_.CreateAdd(arg(in, 0), arg(in, 1));
    case KOp::ISub:
      return b_.CreateSub(arg(in, 0), arg(in, 1));
    case KOp::IMul:
      return b_.CreateMul(arg(in, 0), arg(in, 1));
    // Operands are non-negative by contract, and unsigned division is cheaper.
    case KOp::IDiv:
      return b_.CreateUDiv(arg(in, 0), arg(in, 1));
    case KOp::IRem:
      return b_.CreateURem(arg(in, 0), arg(in, 1));
    case KOp::ILt:
      return b_.CreateICmpSLT(arg(in, 0), arg(in, 1));
    case KOp::FAdd:
      return b_.CreateFAdd(arg(in, 0), arg(in, 1));
    case KOp::FSub:
      return b_.CreateFSub(arg(in, 0), arg(in, 1));
    case KOp::FMul:
      return b_.CreateFMul(arg(in, 0), arg(in, 1));
    case KOp::FDiv:
      return b_.CreateFDiv(arg(in, 0), arg(in, 1));
    case KOp::FNeg:
      return b_.CreateFNeg(arg(in, 0));
    case KOp::FAbs:
      return intrinsic(llvm::Intrinsic::fabs, in);
    case KOp::FMax:
      return intrinsic(llvm::Intrinsic::maximum, in);
    case KOp::FMin:
      return intrinsic(llvm::Intrinsic::minimum, in);
    case KOp::FSqrt:
      return intrinsic(llvm::Intrinsic::sqrt, in);
    // Two correctly rounded steps (<= 1 ulp); rsqrt.approx would be less accurate.
    case KOp::FRsqrt:
      return b_.CreateFDiv(f32(1.0f), intrinsic(llvm::Intrinsic::sqrt, in));
    case KOp::FExp:
      return math(nvptx::MathFn::Exp, in);
    case KOp::FExp16:
      return math(nvptx::MathFn::Exp16, in);
    case KOp::FLog:
      return math(nvptx::MathFn::Log, in);
    case KOp::FSin:
      return math(nvptx::MathFn::Sin, in);
    case KOp::FCos:
      return math(nvptx::MathFn::Cos, in);
    case KOp::FTanh:
      return math(nvptx::MathFn::Tanh, in);
    case KOp::FPow:
      return math(nvptx::MathFn::Pow, in);
    case KOp::FErf:
      return math(nvptx::MathFn::Erf, in);
    case KOp::RoundF16:
      return b_.CreateFPExt(b_.CreateFPTrunc(arg(in, 0), b_.getHalfTy()), b_.getFloatTy());
    case KOp::RoundBF16:
      return fromBf16(toBf16(arg(in, 0)));
    case KOp::FLt:
      return b_.CreateFCmpOLT(arg(in, 0), arg(in, 1));
    case KOp::FLe:
      return b_.CreateFCmpOLE(arg(in, 0), arg(in, 1));
    case KOp::FEq:
      return b_.CreateFCmpOEQ(arg(in, 0), arg(in, 1));
    case KOp::FNe:
      return b_.CreateFCmpUNE(arg(in, 0), arg(in, 1));
    case KOp::And:
      return b_.CreateAnd(arg(in, 0), arg(in, 1));
    case KOp::Or:
      return b_.CreateOr(arg(in, 0), arg(in, 1));
    case KOp::Not:
      return b_.CreateNot(arg(in, 0));
    case KOp::Select:
      return b_.CreateSelect(arg(in, 0), arg(in, 1), arg(in, 2));
    case KOp::Cast:
      return cast(in);
    case KOp::Load:
      return load(in);
    case KOp::Store:
      store(in);
      return nullptr;
    case KOp::AtomicAdd: // atom.global.add.u32
      return b_.CreateAtomicRMW(llvm::AtomicRMWInst::Add, elementPtr(in, b_.getInt32Ty()),
                                arg(in, 1), llvm::MaybeAlign(4), llvm::AtomicOrdering::Monotonic);
    case KOp::Fence: // membar.gl (fence.sc.gpu): __threadfence
      b_.CreateIntrinsic(llvm::Intrinsic::nvvm_membar_gl, {}, {});
      return nullptr;
    case KOp::LocalId:
      return sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_tid_x);
    case KOp::GroupId: // launches are 1-D: up to 2^31 - 1 blocks in x
      return sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ctaid_x);
    case KOp::SharedLoad:
      return sharedLoad(in);
    case KOp::SharedStore:
      sharedStore(in);
      return nullptr;
    case KOp::MatZero:
      return llvm::ConstantAggregateZero::get(fragmentType(KType::MatC));
    case KOp::MatLoad:
    case KOp::MatLoadT:
      return matLoad(in);
    case KOp::MatStore:
      matStore(in);
      return nullptr;
    case KOp::MatMulAdd:
      return matMulAdd(in);
    case KOp::WgZero:
      return llvm::ConstantAggregateZero::get(warpgroupSumsType());
    case KOp::WgDesc:
      return wgDesc(in);
    case KOp::WgMulAdd:
      return wgMulAdd(in);
    case KOp::WgFence:
      asmStatement("wgmma.fence.sync.aligned;");
      return nullptr;
    case KOp::WgCommit:
      asmStatement("wgmma.commit_group.sync.aligned;");
      return nullptr;
    case KOp::WgWait:
      asmStatement("wgmma.wait_group.sync.aligned " + std::to_string(in.imm) + ";");
      return nullptr;
    case KOp::WgStore:
      wgStore(in);
      return nullptr;
    case KOp::ProxyFence:
      asmStatement("fence.proxy.async.shared::cta;");
      return nullptr;
    case KOp::CopyAsync: { // cp.async.cg: 16 bytes, zeros where the source size is 0
      llvm::Value *dst = sharedPtr(static_cast<int>(in.imm), arg(in, 1));
      llvm::Value *src = elementPtr(in, memType(k_.buffers[in.buffer].elem));
      llvm::Value *size = b_.CreateSelect(arg(in, 2), b_.getInt32(16), b_.getInt32(0));
      b_.CreateIntrinsic(llvm::Intrinsic::nvvm_cp_async_cg_shared_global_16_s, {},
                         {dst, src, size});
      return nullptr;
    }
    case KOp::CopyCommit:
      b_.CreateIntrinsic(llvm::Intrinsic::nvvm_cp_async_commit_group, {}, {});
      return nullptr;
    case KOp::CopyWait:
      b_.CreateIntrinsic(llvm::Intrinsic::nvvm_cp_async_wait_group, {},
                         {b_.getInt32(static_cast<uint32_t>(in.imm))});
      return nullptr;
    case KOp::Barrier:
      b_.CreateIntrinsic(llvm::Intrinsic::nvvm_barrier0, {}, {});
      return nullptr;
    case KOp::SubgroupSize: // a warp
      return b_.getInt32(32);
    case KOp::ShuffleXor: // every lane of the warp takes part; 0x1f: lanes wrap within it
      return b_.CreateIntrinsic(llvm::Intrinsic::nvvm_shfl_sync_bfly_f32, {},
                                {b_.getInt32(0xffffffffu), arg(in, 0),
                                 b_.getInt32(static_cast<uint32_t>(in.imm)), b_.getInt32(0x1f)});
    case KOp::VarNew:
      return variable(llvmType(in.type), arg(in, 0));
    case KOp::VarGet:
      return b_.CreateLoad(llvmType(in.type), arg(in, 0));
    case KOp::VarSet:
      b_.CreateStore(arg(in, 1), arg(in, 0));
      return nullptr;
    case KOp::LoopBegin:
      return beginLoop(in);
    case KOp::LoopEnd:
      endLoop();
      return nullptr;
    case KOp::IfBegin:
      beginIf(in);
      return nullptr;
    case KOp::IfEnd:
      endIf();
      return nullptr;
    }
    return nullptr;
  }

  const Kernel &k_;
  llvm::Module &m_;
  llvm::LLVMContext &ctx_;
  llvm::IRBuilder<> b_;
  llvm::Function *fn_ = nullptr;
  std::vector<llvm::Value *> vals_;
  std::vector<int> zeroBits_; // per instruction: see findZeroBits
  struct Lane {
    int leader, lane, width; // leader < 0: a load of its own
  };
  std::vector<Lane> lanes_;                    // per instruction: see findVectorLoads
  std::vector<llvm::Value *> vectors_;         // per leader: its vector, in registers
  std::vector<llvm::GlobalVariable *> shared_; // static arrays
  llvm::GlobalVariable *dynamicShared_ = nullptr;
  std::vector<int64_t> sharedOffsets_; // bytes into dynamicShared_
  std::vector<Region> regions_;
};

// The optimization pipelines. By default a kernel takes LLVM's O3 pipeline, with GVN's
// load elimination (memory dependence analysis) off: its backward scans over the GEMVs'
// long unrolled bodies took a quarter of the O3 passes' time on the decoder's QKV kernel,
// and it changed no byte of the PTX of any example or bench graph (EarlyCSE still merges
// repeated loads). LLVM has no option for it, so the pipeline goes through its text form,
// where GVN reads "gvn<>".
//
// A quick emission (emitPtx's `quick`) gives a kernel without matrix ops a short pipeline
// instead: the kernel IR already says what to unroll and how wide to load, and ptxas
// optimizes the PTX again, so LLVM's part is the variables' SSA form (SROA), the math
// helpers inlined, common values merged, folding, and neighbouring accesses merged into
// vectors; code generation then runs at -O0. On the decoder (examples/llama_decoder.kir)
// that took the PTX of all seven kernels from 229-247 ms to 61-74 ms (2 cores). ptxas for
// sm_90 gives every example's and bench graph's loops the same global loads and stores
// as under O3 but 3-20% more instructions (address arithmetic), which a memory-bound
// loop should hide; an earlier short pipeline, though, lost 6.5 us on the GPU in the
// QKV and wo GEMVs (docs/codegen.md), so until a GPU times this one it is not the
// default. Tensor-core kernels always take O3: their main loop grows by a third without
// it (209 instructions against 159 around 64 HMMA in the 4096^3 matmul), and they are
// bound by their instructions.
constexpr const char *kShortPipeline =
    "always-inline,function(sroa,early-cse,instsimplify,simplifycfg,load-store-vectorizer)";

Status optimize(llvm::Module &m, llvm::TargetMachine &tm, bool full) {
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassInstrumentationCallbacks pic;
  llvm::PassBuilder pb(&tm, llvm::PipelineTuningOptions(), std::nullopt, &pic);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  std::string text = kShortPipeline;
  if (full) {
    text.clear();
    llvm::raw_string_ostream os(text);
    pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3)
        .printPipeline(os, [&](llvm::StringRef c) { return pic.getPassNameForClassName(c); });
    constexpr std::string_view gvn = "gvn<>";
    size_t at = text.find(gvn);
    if (at == std::string::npos || text.find(gvn, at + 1) != std::string::npos)
      return makeError("emitPtx: LLVM's O3 pipeline does not run GVN once");
    text.replace(at, gvn.size(), "gvn<no-memdep>");
  }
  llvm::ModulePassManager mpm;
  if (llvm::Error e = pb.parsePassPipeline(mpm, text))
    return makeError("emitPtx: LLVM cannot read the optimization pipeline: " +
                     llvm::toString(std::move(e)));
  mpm.run(m, mam);
  return Status::ok();
}

} // namespace

int64_t dynamicSharedBytes(const Kernel &k) {
  int64_t bytes = sharedBytes(k);
  return bytes > kStaticSharedBytes ? bytes : 0;
}

Expected<std::string> emitPtx(const Kernel &k, std::string_view smArch, bool quick) {
  if (Status s = verifyKernel(k); s.failed())
    return s;
  if (std::find(kArchs.begin(), kArchs.end(), smArch) == kArchs.end())
    return makeError("emitPtx: unsupported architecture '" + std::string(smArch) +
                     "' (expected sm_80, sm_86, sm_87, sm_89 or sm_90)");
  // Warpgroup matrix ops exist on sm_90a alone, from PTX ISA 8.0 (CUDA 12.0).
  bool warpgroup = std::any_of(k.body.begin(), k.body.end(),
                               [](const KInst &in) { return isWarpgroupOp(in.op); });
  if (warpgroup && smArch != "sm_90")
    return makeError("emitPtx: kernel @" + k.name + " uses warpgroup matrix ops, which " +
                     std::string(smArch) + " lacks (sm_90 only)");
  std::string cpu = warpgroup ? "sm_90a" : std::string(smArch);
  const char *features = warpgroup ? "+ptx80" : kPtxFeatures;
  if (Status s = initNvptxTarget(); s.failed())
    return s;
  std::string err;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(kTriple, err);
  if (!target)
    return makeError("emitPtx: " + err);
  // Default TargetOptions keep IEEE division, square root and denormals, and fuse a multiply
  // and an add only where the IR says fma, so results match the reference interpreter.
  // After the O3 pipeline, code generation runs at the default level (the aggressive one
  // only adds two GVN runs, which changed no byte of the PTX of any example, bench graph
  // or lit input and took a fifth of the decoder's time); after the short one, at -O0.
  bool full = !quick || usesMatrixUnits(k.body);
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      kTriple, cpu, features, llvm::TargetOptions(), std::nullopt, std::nullopt,
      full ? llvm::CodeGenOptLevel::Default : llvm::CodeGenOptLevel::None));
  if (!tm)
    return makeError("emitPtx: cannot create the NVPTX target machine for " + std::string(smArch));

  llvm::LLVMContext ctx;
  llvm::Module m(k.name, ctx);
  m.setTargetTriple(kTriple);
  m.setDataLayout(tm->createDataLayout());
  KernelEmitter(k, m).emit();
  std::string verifyErrors;
  llvm::raw_string_ostream verifyOs(verifyErrors);
  if (llvm::verifyModule(m, &verifyOs))
    return makeError("emitPtx: kernel @" + k.name + " gave invalid LLVM IR: " + verifyErrors);

  if (Status s = optimize(m, *tm, full); s.failed())
    return s;
  llvm::SmallString<0> ptx;
  llvm::raw_svector_ostream os(ptx);
  llvm::legacy::PassManager codegen;
  if (tm->addPassesToEmitFile(codegen, os, nullptr, llvm::CodeGenFileType::AssemblyFile))
    return makeError("emitPtx: the NVPTX target cannot emit assembly");
  codegen.run(m);
  return std::string(ptx.str());
}

} // namespace kiln::compiler
