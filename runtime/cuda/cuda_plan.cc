// A CUDA plan: kernels launched in order on one stream, timed with events.
#include "runtime/cuda/cuda_plan.h"

#include <algorithm>
#include <chrono>
#include <cstring>

namespace kiln::runtime {

namespace {

constexpr unsigned kBlock = 256; // the kernel IR's workgroup size

class CudaPlan : public Plan {
public:
  CudaPlan(std::shared_ptr<cu::Context> ctx, const Executable &exe)
      : ctx_(std::move(ctx)), api_(ctx_->api), exe_(exe) {}
  ~CudaPlan() override;

  Status load();
  Status run(std::span<const int64_t> dims, std::span<const Bytes> inputs,
             std::vector<Bytes> &outputs, RunStats *stats) override;

private:
  Status check(CUresult r, const std::string &what) const { return api_.check(r, what); }
  Status launchAll(std::span<const int64_t> dims, int64_t &launched);

  std::shared_ptr<cu::Context> ctx_;
  const cu::Api &api_;
  Executable exe_;
  std::vector<CUmodule> modules_;
  std::vector<CUfunction> functions_;
  std::vector<CUdeviceptr> buffers_; // per Executable buffer: its own memory, or in the arena
  std::vector<CUdeviceptr> owned_;   // what the plan allocated: the arena and each other buffer
  CUdeviceptr dims_ = 0;
  CUstream stream_ = nullptr;
  CUevent start_ = nullptr, stop_ = nullptr;
};

CudaPlan::~CudaPlan() {
  if (ctx_->enter().failed())
    return;
  for (CUdeviceptr b : owned_)
    api_.cuMemFree(b);
  if (dims_)
    api_.cuMemFree(dims_);
  for (CUmodule m : modules_)
    api_.cuModuleUnload(m);
  for (CUevent e : {start_, stop_})
    if (e)
      api_.cuEventDestroy(e);
  if (stream_)
    api_.cuStreamDestroy(stream_);
}

Status CudaPlan::load() {
  if (Status s = ctx_->enter(); s.failed())
    return s;
  for (const ExecKernel &k : exe_.kernels) {
    if (k.ptx.empty())
      return makeError("cuda: kernel " + k.name + " has no PTX (compile it for " + ctx_->arch +
                       ")");
    // The JIT's error log names the line of the PTX it refuses.
    char log[4096] = {};
    CUjit_option opts[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *values[] = {log, reinterpret_cast<void *>(static_cast<uintptr_t>(sizeof log - 1))};
    CUmodule m = nullptr;
    if (Status s = check(api_.cuModuleLoadDataEx(&m, k.ptx.c_str(), 2, opts, values),
                         "loading the PTX of kernel " + k.name);
        s.failed())
      return makeError(s.message() + (log[0] ? std::string(": ") + log : ""));
    modules_.push_back(m);
    CUfunction f = nullptr;
    if (Status s = check(api_.cuModuleGetFunction(&f, m, k.name.c_str()), "cuModuleGetFunction");
        s.failed())
      return s;
    // Shared memory past the 48 KB a kernel declares statically is asked for at launch,
    // up to a limit the function must be given first.
    if (k.dynamicShared > 0)
      if (Status s =
              check(api_.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                            static_cast<int>(k.dynamicShared)),
                    "giving kernel " + k.name + " " + std::to_string(k.dynamicShared) +
                        " bytes of shared memory");
          s.failed())
        return s;
    functions_.push_back(f);
  }
  // Every buffer at the largest value of each dim, so that any binding fits.
  std::vector<int64_t> most = largestDims(exe_.dims);
  // Temporaries at their offsets in one arena (the passes' memory plan: those that share
  // bytes run in order on the one stream).
  if (Status s = checkArena(exe_); s.failed())
    return makeError("cuda: " + s.message());
  CUdeviceptr arena = 0;
  if (exe_.arenaBytes > 0) {
    if (Status s = check(api_.cuMemAlloc(&arena, static_cast<size_t>(exe_.arenaBytes)),
                         "cuMemAlloc of the arena");
        s.failed())
      return s;
    owned_.push_back(arena);
  }
  for (const ExecBuffer &b : exe_.buffers) {
    if (b.arenaOffset >= 0) {
      buffers_.push_back(arena + static_cast<CUdeviceptr>(b.arenaOffset));
      continue;
    }
    size_t bytes = static_cast<size_t>(std::max<int64_t>(bufferBytes(b, most), 4));
    CUdeviceptr p = 0;
    if (Status s = check(api_.cuMemAlloc(&p, bytes), "cuMemAlloc of " + b.name); s.failed())
      return s;
    owned_.push_back(p);
    buffers_.push_back(p);
    if (b.role == BufferRole::Zeroed)
      if (Status s = check(api_.cuMemsetD8(p, 0, bytes), "zeroing " + b.name); s.failed())
        return s;
  }
  size_t dimBytes = std::max<size_t>(exe_.dims.size(), 1) * sizeof(int32_t);
  if (Status s = check(api_.cuMemAlloc(&dims_, dimBytes), "cuMemAlloc"); s.failed())
    return s;
  if (Status s = check(api_.cuStreamCreate(&stream_, CU_STREAM_DEFAULT), "cuStreamCreate");
      s.failed())
    return s;
  if (Status s = check(api_.cuEventCreate(&start_, CU_EVENT_DEFAULT), "cuEventCreate"); s.failed())
    return s;
  return check(api_.cuEventCreate(&stop_, CU_EVENT_DEFAULT), "cuEventCreate");
}

Status CudaPlan::launchAll(std::span<const int64_t> dims, int64_t &launched) {
  for (size_t i = 0; i < exe_.kernels.size(); ++i) {
    const ExecKernel &k = exe_.kernels[i];
    int64_t n = invocations(k, dims);
    if (n <= 0)
      continue;
    ++launched;
    std::vector<CUdeviceptr> args;
    for (int b : k.buffers)
      args.push_back(buffers_[b]);
    args.push_back(dims_);
    std::vector<void *> params;
    for (CUdeviceptr &a : args)
      params.push_back(&a);
    auto blocks = static_cast<unsigned>((n + kBlock - 1) / kBlock);
    if (Status s = check(api_.cuLaunchKernel(functions_[i], blocks, 1, 1, kBlock, 1, 1,
                                             static_cast<unsigned>(k.dynamicShared), stream_,
                                             params.data(), nullptr),
                         "launching kernel " + k.name);
        s.failed())
      return s;
  }
  return Status::ok();
}

Status CudaPlan::run(std::span<const int64_t> dims, std::span<const Bytes> inputs,
                     std::vector<Bytes> &outputs, RunStats *stats) {
  if (Status s = checkRunArgs(exe_, dims, inputs); s.failed())
    return s;
  if (Status s = ctx_->enter(); s.failed())
    return s;
  std::vector<int32_t> dimValues(dims.begin(), dims.end());
  if (!dimValues.empty())
    if (Status s = check(api_.cuMemcpyHtoD(dims_, dimValues.data(), dimValues.size() * 4),
                         "copying the dims");
        s.failed())
      return s;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].empty())
      if (Status s =
              check(api_.cuMemcpyHtoD(buffers_[exe_.inputs[i]], inputs[i].data(), inputs[i].size()),
                    "copying input " + exe_.buffers[exe_.inputs[i]].name);
          s.failed())
        return s;
  // A copy from pageable memory returns before its last DMA lands, and the first kernel
  // would wait for it inside the timed span.
  if (Status s = check(api_.cuCtxSynchronize(), "copying the inputs"); s.failed())
    return s;
  auto t0 = std::chrono::steady_clock::now();
  if (Status s = check(api_.cuEventRecord(start_, stream_), "cuEventRecord"); s.failed())
    return s;
  int64_t launched = 0;
  if (Status s = launchAll(dims, launched); s.failed())
    return s;
  if (Status s = check(api_.cuEventRecord(stop_, stream_), "cuEventRecord"); s.failed())
    return s;
  if (Status s = check(api_.cuStreamSynchronize(stream_), "running the kernels"); s.failed())
    return s;
  auto t1 = std::chrono::steady_clock::now();
  float ms = 0;
  if (Status s = check(api_.cuEventElapsedTime(&ms, start_, stop_), "cuEventElapsedTime");
      s.failed())
    return s;
  if (stats) {
    stats->kernels = stats->submits = launched; // one stream: its order is the only barrier
    stats->deviceMicros = ms * 1e3;
    stats->hostMicros = std::chrono::duration<double, std::micro>(t1 - t0).count();
  }
  outputs.resize(exe_.outputs.size());
  for (size_t i = 0; i < exe_.outputs.size(); ++i) {
    int b = exe_.outputs[i];
    outputs[i].resize(static_cast<size_t>(bufferBytes(exe_.buffers[b], dims)));
    if (!outputs[i].empty())
      if (Status s = check(api_.cuMemcpyDtoH(outputs[i].data(), buffers_[b], outputs[i].size()),
                           "copying output " + exe_.buffers[b].name);
          s.failed())
        return s;
  }
  return Status::ok();
}

} // namespace

Expected<std::unique_ptr<Plan>> loadCudaPlan(std::shared_ptr<cu::Context> ctx,
                                             const Executable &exe) {
  auto plan = std::make_unique<CudaPlan>(std::move(ctx), exe);
  if (Status s = plan->load(); s.failed())
    return s;
  return std::unique_ptr<Plan>(std::move(plan));
}

} // namespace kiln::runtime
