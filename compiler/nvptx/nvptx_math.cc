// f32 math for NVPTX kernels as LLVM IR, with the error analysis of each sequence.
//
// Every sequence uses only IEEE operations (fma, correctly rounded +-*/ and conversions) and
// integer bit manipulation, so results are the same on every NVIDIA GPU and need no
// libdevice, except exp, whose 2^t comes from the special function unit (ex2.approx): it is
// the hot function of softmax, where the polynomial cost more than the memory traffic.
// Relative errors below are bounds on the computed f32 result against the exact function, in
// ulps of f32 (1 ulp <= 2^-23 relative); every function stays well under 1e-6 (~8 ulp).
#include "compiler/nvptx/nvptx_math.h"

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <utility>

#include "llvm/IR/Constants.h"
#include "llvm/IR/IRBuilder.h"
#include "llvm/IR/Intrinsics.h"
#include "llvm/IR/IntrinsicsNVPTX.h"

namespace kiln::compiler::nvptx {
namespace {

using llvm::Value;
using Builder = llvm::IRBuilder<>;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kInfD = std::numeric_limits<double>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kLog2E = 0x1.715476p+0f;
// ln 2 = kLn2Hi + kLn2Lo to ~48 bits; kLn2Hi * n is exact inside an fma for |n| <= 2^8.
constexpr float kLn2Hi = 0x1.62e430p-1f;
constexpr float kLn2Lo = -0x1.05c610p-29f;
constexpr double kLn2 = 0x1.62e42fefa39efp-1;
constexpr double kLn2DLo = 0x1.abc9e3b39803fp-56;

Value *fc(Builder &b, float v) { return llvm::ConstantFP::get(b.getFloatTy(), v); }
Value *dc(Builder &b, double v) { return llvm::ConstantFP::get(b.getDoubleTy(), v); }

Value *fma(Builder &b, Value *x, Value *y, Value *z) {
  return b.CreateIntrinsic(llvm::Intrinsic::fma, {x->getType()}, {x, y, z});
}
Value *call(Builder &b, llvm::Intrinsic::ID id, Value *x) { return b.CreateUnaryIntrinsic(id, x); }

// Horner's rule in x's type; coefficients from the highest degree down.
Value *horner(Builder &b, Value *x, std::initializer_list<double> c) {
  Value *acc = llvm::ConstantFP::get(x->getType(), *c.begin());
  for (const double *it = c.begin() + 1; it != c.end(); ++it)
    acc = fma(b, acc, x, llvm::ConstantFP::get(x->getType(), *it));
  return acc;
}

Value *isNan(Builder &b, Value *x) { return b.CreateFCmpUNO(x, x); }
Value *signBitSet(Builder &b, Value *x) {
  return b.CreateICmpSLT(b.CreateBitCast(x, b.getInt32Ty()), b.getInt32(0));
}
// select(x < hi, x, hi) then the same against lo: a NaN x becomes hi, so later integer
// conversions never see a NaN (callers put NaN back at the end).
Value *clampOrdered(Builder &b, Value *x, Value *lo, Value *hi) {
  x = b.CreateSelect(b.CreateFCmpOLT(x, hi), x, hi);
  return b.CreateSelect(b.CreateFCmpOGT(x, lo), x, lo);
}

// expm1(r) for |r| <= ln2/2 + tiny: Taylor series through r^8; the first omitted term is
// below 6e-10 relative. Horner plus the final fma: ~1 ulp.
Value *expm1Poly(Builder &b, Value *r) {
  Value *p =
      horner(b, r, {1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1.0 / 2});
  return fma(b, b.CreateFMul(r, r), p, r);
}

// x = n ln2 + r with |r| <= ln2/2 (Cody-Waite). For |x| <= 104, x - k*kLn2Hi is exact in the
// fma (the result is a multiple of 2^-25 below 1/2), so r carries one rounding.
std::pair<Value *, Value *> reduceLn2(Builder &b, Value *x) {
  Value *k = call(b, llvm::Intrinsic::rint, b.CreateFMul(x, fc(b, kLog2E)));
  Value *nk = b.CreateFNeg(k);
  Value *r = fma(b, nk, fc(b, kLn2Hi), x);
  r = fma(b, nk, fc(b, kLn2Lo), r);
  return {r, b.CreateFPToSI(k, b.getInt32Ty())};
}

Value *pow2(Builder &b, Value *e) {
  return b.CreateBitCast(b.CreateShl(b.CreateAdd(e, b.getInt32(127)), 23), b.getFloatTy());
}

// v * 2^n for n in [-150, 128], in two exact power-of-two steps so that overflow gives inf
// and a subnormal result is rounded once.
Value *scale2(Builder &b, Value *v, Value *n) {
  Value *n1 = b.CreateAShr(n, 1);
  Value *n2 = b.CreateSub(n, n1);
  return b.CreateFMul(b.CreateFMul(v, pow2(b, n1)), pow2(b, n2));
}

// exp: 2^t (1 + lo ln2), where t + lo = x log2(e) to ~2^-48 relative (t the rounded
// product, lo its error from an fma plus the tail of log2(e)), and 2^t comes from the
// special function unit (ex2.approx, about 2.4 ulp at most, subnormal results included).
// The first-order correction leaves under 2^-36, the last fma 0.5 ulp: about 3 ulp in all,
// in 9 instructions where a polynomial took 26. x is raised to -104 first (exp is 0 below,
// and -inf would make lo NaN) NaN-propagating; from 0x42b17218 (just above 128 ln2) the
// result is inf, and below it t < 128, so 2^t is finite.
void buildExp(Builder &b, llvm::Function *fn) {
  constexpr float kLog2ELo = 0x1.4ae0cp-26f; // log2(e) - kLog2E
  constexpr float kOverflow = 0x1.62e430p+6f;
  Value *x = fn->getArg(0);
  Value *xc = b.CreateBinaryIntrinsic(llvm::Intrinsic::maximum, x, fc(b, -104.0f));
  Value *t = b.CreateFMul(xc, fc(b, kLog2E));
  Value *lo = fma(b, xc, fc(b, kLog2E), b.CreateFNeg(t));
  lo = fma(b, xc, fc(b, kLog2ELo), lo);
  Value *e = b.CreateIntrinsic(llvm::Intrinsic::nvvm_ex2_approx_f, {}, {t});
  Value *r = fma(b, e, b.CreateFMul(lo, fc(b, static_cast<float>(kLn2))), e);
  b.CreateRet(b.CreateSelect(b.CreateFCmpOGE(x, fc(b, kOverflow)), fc(b, kInf), r));
}

// exp to 16-bit float precision: 2^t with t = x log2(e) rounded, straight from the special
// function unit. t's rounding (2^-24 |t|, |t| < 150 where the result is neither 0 nor
// inf) and log2(e)'s (2^-25 |t|) cost ln2 * 2^-24 * 1.5 * 150 < 2^-16.5 relative, ex2's
// own 2.4 ulp nothing more: a sixteenth of an f16 rounding step. Infinities and NaN map
// through ex2 as exp maps them, and the result keeps subnormals.
void buildExp16(Builder &b, llvm::Function *fn) {
  Value *t = b.CreateFMul(fn->getArg(0), fc(b, kLog2E));
  b.CreateRet(b.CreateIntrinsic(llvm::Intrinsic::nvvm_ex2_approx_f, {}, {t}));
}

// log: x = 2^e m with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(s), s = (m-1)/(m+1), where
// |s| <= 0.1716 and the series in z = s^2 is truncated after z^4/9 (next term < 3e-9 relative).
// m - 1 is exact (Sterbenz); s carries ~1 ulp, the series ~0.5 ulp, and e ln2 + log(m) never
// cancels by more than a factor of 2 (|log m| <= ln2/2): under 3 ulp in all.
void buildLog(Builder &b, llvm::Function *fn) {
  Value *x = fn->getArg(0);
  llvm::Type *i32 = b.getInt32Ty();
  // Subnormals are scaled up by 2^23 first.
  Value *sub = b.CreateFCmpOLT(x, fc(b, 0x1p-126f));
  Value *xs = b.CreateSelect(sub, b.CreateFMul(x, fc(b, 0x1p23f)), x);
  Value *ix = b.CreateBitCast(xs, i32);
  Value *e = b.CreateAShr(b.CreateSub(ix, b.getInt32(0x3f3504f3)), 23);
  Value *m = b.CreateBitCast(b.CreateSub(ix, b.CreateShl(e, 23)), b.getFloatTy());
  e = b.CreateAdd(e, b.CreateSelect(sub, b.getInt32(-23), b.getInt32(0)));
  Value *f = b.CreateFSub(m, fc(b, 1.0f));
  Value *s = b.CreateFDiv(f, b.CreateFAdd(f, fc(b, 2.0f)));
  Value *u = b.CreateFMul(s, fc(b, 2.0f));
  Value *z = b.CreateFMul(s, s);
  Value *p = horner(b, z, {1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3});
  Value *lm = fma(b, u, b.CreateFMul(z, p), u);
  Value *ef = b.CreateSIToFP(e, b.getFloatTy());
  Value *res = fma(b, ef, fc(b, kLn2Hi), fma(b, ef, fc(b, kLn2Lo), lm));
  res = b.CreateSelect(b.CreateFCmpOEQ(x, fc(b, kInf)), x, res);
  res = b.CreateSelect(b.CreateFCmpOEQ(x, fc(b, 0.0f)), fc(b, -kInf), res);
  res = b.CreateSelect(b.CreateFCmpOLT(x, fc(b, 0.0f)), fc(b, kNaN), res);
  b.CreateRet(b.CreateSelect(isNan(b, x), x, res));
}

// ln|x| in f64 for pow: the log sequence above in double, with the series through z^8/17
// (next term < 1e-15 relative). |x| = 0, inf and NaN are fixed up by the caller.
Value *logAbsF64(Builder &b, Value *ax) {
  llvm::Type *i64 = b.getInt64Ty();
  Value *d = b.CreateFPExt(ax, b.getDoubleTy());
  Value *ix = b.CreateBitCast(d, i64);
  Value *e = b.CreateAShr(b.CreateSub(ix, b.getInt64(0x3fe6a09e667f3bcdLL)), 52);
  Value *m = b.CreateBitCast(b.CreateSub(ix, b.CreateShl(e, 52)), b.getDoubleTy());
  Value *f = b.CreateFSub(m, dc(b, 1.0));
  Value *s = b.CreateFDiv(f, b.CreateFAdd(f, dc(b, 2.0)));
  Value *u = b.CreateFMul(s, dc(b, 2.0));
  Value *z = b.CreateFMul(s, s);
  Value *p =
      horner(b, z, {1.0 / 17, 1.0 / 15, 1.0 / 13, 1.0 / 11, 1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3});
  Value *lm = fma(b, u, b.CreateFMul(z, p), u);
  Value *ef = b.CreateSIToFP(e, b.getDoubleTy());
  Value *res = fma(b, ef, dc(b, kLn2), fma(b, ef, dc(b, kLn2DLo), lm));
  res = b.CreateSelect(b.CreateFCmpOEQ(ax, fc(b, 0.0f)), dc(b, -kInfD), res);
  return b.CreateSelect(b.CreateFCmpOEQ(ax, fc(b, kInf)), dc(b, kInfD), res);
}

// pow: |x|^y = exp(y ln|x|) with t = y ln|x| formed in f64 (abs error ~1e-14 for |t| <= 104),
// reduced by ln2 in f64 and only then rounded to f32 (|r| <= 0.35, error < 2^-25), so the f32
// exp kernel adds under 2 ulp. Signs and special cases follow C powf.
void buildPow(Builder &b, llvm::Function *fn) {
  Value *x = fn->getArg(0), *y = fn->getArg(1);
  Value *ax = call(b, llvm::Intrinsic::fabs, x);
  Value *ay = call(b, llvm::Intrinsic::fabs, y);
  Value *t = b.CreateFMul(b.CreateFPExt(y, b.getDoubleTy()), logAbsF64(b, ax));
  Value *tc = clampOrdered(b, t, dc(b, -104.0), dc(b, 89.0));
  Value *k = call(b, llvm::Intrinsic::rint, b.CreateFMul(tc, dc(b, 1.0 / kLn2)));
  Value *rd = fma(b, b.CreateFNeg(k), dc(b, kLn2), tc);
  rd = fma(b, b.CreateFNeg(k), dc(b, kLn2DLo), rd);
  Value *r = b.CreateFPTrunc(rd, b.getFloatTy());
  Value *n = b.CreateFPToSI(k, b.getInt32Ty());
  Value *mag = scale2(b, b.CreateFAdd(fc(b, 1.0f), expm1Poly(b, r)), n);
  // A NaN x has garbage exponent bits, so test it as well as t.
  mag = b.CreateSelect(b.CreateOr(isNan(b, t), isNan(b, x)), fc(b, kNaN), mag);

  // Every float with |y| >= 2^24 is an even integer.
  Value *yInt = b.CreateFCmpOEQ(y, call(b, llvm::Intrinsic::trunc, y));
  Value *ySmall = b.CreateFCmpOLT(ay, fc(b, 0x1p24f));
  Value *yi = b.CreateFPToSI(b.CreateSelect(ySmall, y, fc(b, 0.0f)), b.getInt32Ty());
  Value *yOdd = b.CreateAnd(b.CreateAnd(yInt, ySmall),
                            b.CreateICmpNE(b.CreateAnd(yi, b.getInt32(1)), b.getInt32(0)));
  Value *res = b.CreateSelect(b.CreateAnd(signBitSet(b, x), yOdd), b.CreateFNeg(mag), mag);
  Value *negFinite = b.CreateAnd(b.CreateFCmpOLT(x, fc(b, 0.0f)), b.CreateFCmpOGT(x, fc(b, -kInf)));
  res = b.CreateSelect(b.CreateAnd(negFinite, b.CreateNot(yInt)), fc(b, kNaN), res);
  Value *minusOneInf =
      b.CreateAnd(b.CreateFCmpOEQ(x, fc(b, -1.0f)), b.CreateFCmpOEQ(ay, fc(b, kInf)));
  Value *one = b.CreateOr(
      b.CreateOr(b.CreateFCmpOEQ(y, fc(b, 0.0f)), b.CreateFCmpOEQ(x, fc(b, 1.0f))), minusOneInf);
  b.CreateRet(b.CreateSelect(one, fc(b, 1.0f), res));
}

// tanh |x| = em / (em + 2) with em = expm1(2|x|) = 2^n expm1(r) + (2^n - 1), which cancels by
// at most a factor ~1.5 (expm1(r) >= -0.3). em is good to ~2 ulp and the quotient damps its
// error, so ~3.5 ulp in all; tiny |x| give em = 2|x| exactly and tanh = |x|. From |x| = 9.1
// tanh rounds to 1.
void buildTanh(Builder &b, llvm::Function *fn) {
  Value *x = fn->getArg(0);
  Value *ax = call(b, llvm::Intrinsic::fabs, x);
  Value *a = b.CreateSelect(b.CreateFCmpOLT(ax, fc(b, 9.1f)), ax, fc(b, 9.1f));
  auto [r, n] = reduceLn2(b, b.CreateFMul(a, fc(b, 2.0f)));
  Value *s = pow2(b, n);
  Value *em = fma(b, s, expm1Poly(b, r), b.CreateFSub(s, fc(b, 1.0f)));
  Value *th = b.CreateFDiv(em, b.CreateFAdd(em, fc(b, 2.0f)));
  Value *res = b.CreateBinaryIntrinsic(llvm::Intrinsic::copysign, th, x);
  b.CreateRet(b.CreateSelect(isNan(b, x), x, res));
}

// erf: |x| < 1: x P(x^2), P a Chebyshev fit of erf(sqrt t)/sqrt t on [0,1] (fit error 3e-11);
// [1, 2.5) and [2.5, 4): Chebyshev fits of erf in u = |x| - centre (fit error 1e-9 and 3e-11);
// from 4, erf rounds to 1. The f32 coefficients and Horner add a few ulp (sum |c_i u^i| stays
// below 1.7 |result|). Coefficients were computed with mpmath.chebyfit.
void buildErf(Builder &b, llvm::Function *fn) {
  Value *x = fn->getArg(0);
  Value *ax = call(b, llvm::Intrinsic::fabs, x);
  Value *small = b.CreateFMul(
      ax, horner(b, b.CreateFMul(ax, ax),
                 {-9.667044651e-06, 1.126595889e-04, -8.484080317e-04, 5.221031606e-03,
                  -2.686543018e-02, 1.128378212e-01, -3.761263788e-01, 1.128379226e+00}));
  static constexpr float kLow[] = {-2.999477692e-05, -3.352815111e-04, 9.086662321e-04,
                                   6.637792685e-04,  -6.062835921e-03, 8.982136846e-03,
                                   6.624890491e-03,  -4.810471088e-02, 9.015726298e-02,
                                   -9.235612303e-02, 5.277499557e-02,  9.866716862e-01};
  static constexpr float kHigh[] = {-3.667516012e-06, 8.514550132e-07,  2.639685772e-05,
                                    -8.364961104e-05, 1.698540145e-04,  -2.629463270e-04,
                                    3.138151078e-04,  -2.866459545e-04, 1.958088542e-04,
                                    -9.486063936e-05, 2.918903192e-05,  9.999957085e-01};
  Value *upper = b.CreateFCmpOGE(ax, fc(b, 2.5f));
  Value *u = b.CreateFSub(ax, b.CreateSelect(upper, fc(b, 3.25f), fc(b, 1.75f)));
  Value *mid = b.CreateSelect(upper, fc(b, kHigh[0]), fc(b, kLow[0]));
  for (int i = 1; i < 12; ++i)
    mid = fma(b, mid, u, b.CreateSelect(upper, fc(b, kHigh[i]), fc(b, kLow[i])));
  mid = b.CreateBinaryIntrinsic(llvm::Intrinsic::minnum, mid, fc(b, 1.0f));
  Value *res = b.CreateSelect(b.CreateFCmpOLT(ax, fc(b, 1.0f)), small, mid);
  res = b.CreateSelect(b.CreateFCmpOGE(ax, fc(b, 4.0f)), fc(b, 1.0f), res);
  res = b.CreateBinaryIntrinsic(llvm::Intrinsic::copysign, res, x);
  b.CreateRet(b.CreateSelect(isNan(b, x), x, res));
}

// 2/pi in 32-bit words after one zero word, so that the window below may start before the
// binary point.
constexpr uint32_t kTwoOverPi[] = {0,          0xA2F9836E, 0x4E441529, 0xFC2757D1,
                                   0xF534DDC0, 0xDB629599, 0x3C439041, 0xFE5163AB};

llvm::GlobalVariable *twoOverPiTable(llvm::Module &m) {
  if (llvm::GlobalVariable *g = m.getGlobalVariable("kiln.two_over_pi", true))
    return g;
  llvm::LLVMContext &ctx = m.getContext();
  auto *data = llvm::ConstantDataArray::get(ctx, llvm::ArrayRef<uint32_t>(kTwoOverPi));
  return new llvm::GlobalVariable(m, data->getType(), true, llvm::GlobalValue::InternalLinkage,
                                  data, "kiln.two_over_pi", nullptr,
                                  llvm::GlobalValue::NotThreadLocal, /*AddressSpace=*/1);
}

// Payne-Hanek for |x| >= 1e5 (and inf/NaN, which the caller discards): with x = M 2^E (M the
// 24-bit significand), x 2/pi mod 4 = M W 2^-94 where W holds 96 bits of 2/pi starting at bit
// E-1 (earlier bits add multiples of 4). The product is exact in i128, the dropped tail is
// below 2^-70, and the fraction goes to f64 before the multiply by pi/2, so r is correctly
// rounded to f32 up to a few 2^-53 even for the floats closest to a multiple of pi/2.
std::pair<Value *, Value *> reduceLarge(Builder &b, llvm::Module &m, Value *ax) {
  llvm::Type *i32 = b.getInt32Ty(), *i128 = b.getIntNTy(128);
  Value *ix = b.CreateBitCast(ax, i32);
  Value *mant = b.CreateOr(b.CreateAnd(ix, b.getInt32(0x7fffff)), b.getInt32(0x800000));
  Value *g0 = b.CreateSub(b.CreateLShr(ix, 23), b.getInt32(120));
  Value *w = b.CreateLShr(g0, 5);
  llvm::GlobalVariable *table = twoOverPiTable(m);
  Value *win = llvm::ConstantInt::get(i128, 0);
  for (int j = 0; j < 4; ++j) {
    Value *idx = b.CreateAdd(w, b.getInt32(j));
    Value *ptr = b.CreateInBoundsGEP(table->getValueType(), table, {b.getInt32(0), idx});
    Value *word = b.CreateZExt(b.CreateAlignedLoad(i32, ptr, llvm::Align(4)), i128);
    win = b.CreateOr(win, b.CreateShl(word, 96 - 32 * j));
  }
  win = b.CreateShl(win, b.CreateZExt(b.CreateAnd(g0, b.getInt32(31)), i128));
  Value *p = b.CreateMul(b.CreateLShr(win, 32), b.CreateZExt(mant, i128));
  Value *q = b.CreateTrunc(b.CreateLShr(p, 94), i32);
  Value *frac = b.CreateUIToFP(b.CreateTrunc(b.CreateLShr(p, 30), b.getInt64Ty()), b.getDoubleTy());
  frac = b.CreateFMul(frac, dc(b, 0x1p-64));
  Value *up = b.CreateFCmpOGE(frac, dc(b, 0.5));
  frac = b.CreateSelect(up, b.CreateFSub(frac, dc(b, 1.0)), frac);
  q = b.CreateAdd(q, b.CreateZExt(up, i32));
  Value *r = b.CreateFMul(frac, dc(b, 0x1.921fb54442d18p+0));
  return {b.CreateFPTrunc(r, b.getFloatTy()), q};
}

// |x| = q pi/2 + r with |r| <= pi/4 + tiny. Below 1e5, three-part Cody-Waite in f32 fmas:
// k < 2^17, so x - k*P1 is exact (a multiple of 2^-23 below 1), and P1+P2+P3 matches pi/2 to
// 1e-23, leaving an absolute error under 1e-17 plus one rounding relative to r. Above,
// Payne-Hanek on a slower branch.
std::pair<Value *, Value *> reducePiOver2(Builder &b, llvm::Function *fn, Value *ax) {
  llvm::LLVMContext &ctx = fn->getContext();
  auto *fast = llvm::BasicBlock::Create(ctx, "fast", fn);
  auto *slow = llvm::BasicBlock::Create(ctx, "slow", fn);
  auto *join = llvm::BasicBlock::Create(ctx, "join", fn);
  b.CreateCondBr(b.CreateFCmpOLT(ax, fc(b, 1e5f)), fast, slow);

  b.SetInsertPoint(fast);
  Value *k = call(b, llvm::Intrinsic::rint, b.CreateFMul(ax, fc(b, 0x1.45f306p-1f)));
  Value *nk = b.CreateFNeg(k);
  Value *rf = fma(b, nk, fc(b, 0x1.921fb6p+0f), ax);
  rf = fma(b, nk, fc(b, -0x1.777a5cp-25f), rf);
  rf = fma(b, nk, fc(b, -0x1.ee59dap-50f), rf);
  Value *qf = b.CreateFPToSI(k, b.getInt32Ty());
  b.CreateBr(join);

  b.SetInsertPoint(slow);
  auto [rs, qs] = reduceLarge(b, *fn->getParent(), ax);
  b.CreateBr(join);

  b.SetInsertPoint(join);
  llvm::PHINode *r = b.CreatePHI(b.getFloatTy(), 2);
  r->addIncoming(rf, fast);
  r->addIncoming(rs, slow);
  llvm::PHINode *q = b.CreatePHI(b.getInt32Ty(), 2);
  q->addIncoming(qf, fast);
  q->addIncoming(qs, slow);
  return {r, q};
}

// sin(q pi/2 + r) for |r| <= pi/4: Taylor series of sin through r^9 (next term 2e-9
// relative) and of cos through r^10 (next 1e-10), each ~1.5 ulp.
Value *sinQuadrant(Builder &b, Value *r, Value *q) {
  Value *z = b.CreateFMul(r, r);
  Value *s =
      fma(b, b.CreateFMul(r, z), horner(b, z, {1.0 / 362880, -1.0 / 5040, 1.0 / 120, -1.0 / 6}), r);
  Value *c =
      fma(b, b.CreateFMul(z, z), horner(b, z, {-1.0 / 3628800, 1.0 / 40320, -1.0 / 720, 1.0 / 24}),
          fma(b, z, fc(b, -0.5f), fc(b, 1.0f)));
  Value *odd = b.CreateICmpNE(b.CreateAnd(q, b.getInt32(1)), b.getInt32(0));
  Value *neg = b.CreateICmpNE(b.CreateAnd(q, b.getInt32(2)), b.getInt32(0));
  Value *v = b.CreateSelect(odd, c, s);
  return b.CreateSelect(neg, b.CreateFNeg(v), v);
}

void buildSinCos(Builder &b, llvm::Function *fn, bool isCos) {
  Value *x = fn->getArg(0);
  Value *ax = call(b, llvm::Intrinsic::fabs, x);
  auto [r, q] = reducePiOver2(b, fn, ax);
  Value *res;
  if (isCos) {
    res = sinQuadrant(b, r, b.CreateAdd(q, b.getInt32(1)));
  } else {
    res = sinQuadrant(b, r, q);
    res = b.CreateSelect(signBitSet(b, x), b.CreateFNeg(res), res);
  }
  Value *finite = b.CreateFCmpOLT(ax, fc(b, kInf));
  b.CreateRet(b.CreateSelect(finite, res, fc(b, kNaN)));
}

const char *functionName(MathFn fn) {
  switch (fn) {
  case MathFn::Exp:
    return "kiln.expf";
  case MathFn::Exp16:
    return "kiln.exp16f";
  case MathFn::Log:
    return "kiln.logf";
  case MathFn::Sin:
    return "kiln.sinf";
  case MathFn::Cos:
    return "kiln.cosf";
  case MathFn::Tanh:
    return "kiln.tanhf";
  case MathFn::Pow:
    return "kiln.powf";
  case MathFn::Erf:
    return "kiln.erff";
  }
  return "kiln.unknown";
}

} // namespace

llvm::Function *getMathFunction(llvm::Module &m, MathFn fn) {
  const char *name = functionName(fn);
  if (llvm::Function *f = m.getFunction(name))
    return f;
  llvm::LLVMContext &ctx = m.getContext();
  llvm::Type *f32 = llvm::Type::getFloatTy(ctx);
  std::vector<llvm::Type *> params(fn == MathFn::Pow ? 2 : 1, f32);
  auto *f = llvm::Function::Create(llvm::FunctionType::get(f32, params, false),
                                   llvm::GlobalValue::InternalLinkage, name, m);
  f->addFnAttr(llvm::Attribute::NoUnwind);
  f->addFnAttr(llvm::Attribute::AlwaysInline);
  Builder b(llvm::BasicBlock::Create(ctx, "entry", f));
  switch (fn) {
  case MathFn::Exp:
    buildExp(b, f);
    break;
  case MathFn::Exp16:
    buildExp16(b, f);
    break;
  case MathFn::Log:
    buildLog(b, f);
    break;
  case MathFn::Sin:
    buildSinCos(b, f, false);
    break;
  case MathFn::Cos:
    buildSinCos(b, f, true);
    break;
  case MathFn::Tanh:
    buildTanh(b, f);
    break;
  case MathFn::Pow:
    buildPow(b, f);
    break;
  case MathFn::Erf:
    buildErf(b, f);
    break;
  }
  return f;
}

} // namespace kiln::compiler::nvptx
