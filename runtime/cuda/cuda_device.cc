// The CUDA device: the driver, a device and its primary context.
#include "runtime/cuda/cuda_device.h"

#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/cuda_plan.h"

namespace kiln::runtime {

namespace {

using cu::Context;

Expected<std::string> archOf(const cu::Api &api, CUdevice d) {
  int major = 0, minor = 0;
  if (Status s = api.check(
          api.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d),
          "cuDeviceGetAttribute");
      s.failed())
    return s;
  if (Status s = api.check(
          api.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d),
          "cuDeviceGetAttribute");
      s.failed())
    return s;
  return "sm_" + std::to_string(major) + std::to_string(minor);
}

Expected<CudaDeviceInfo> infoOf(const cu::Api &api, int index, CUdevice &d) {
  if (Status s = api.check(api.cuDeviceGet(&d, index), "cuDeviceGet"); s.failed())
    return s;
  char name[256] = {};
  if (Status s = api.check(api.cuDeviceGetName(name, sizeof name - 1, d), "cuDeviceGetName");
      s.failed())
    return s;
  auto arch = archOf(api, d);
  if (!arch)
    return arch.error();
  return CudaDeviceInfo{name, *arch};
}

class CudaDevice : public Device {
public:
  explicit CudaDevice(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}
  std::string describe() const override { return "cuda: " + ctx_->name + " (" + ctx_->arch + ")"; }
  Expected<std::unique_ptr<Plan>> load(const Executable &exe) override {
    return loadCudaPlan(ctx_, exe);
  }

private:
  std::shared_ptr<Context> ctx_;
};

} // namespace

Expected<std::vector<CudaDeviceInfo>> listCudaDevices() {
  cu::Api api;
  if (Status s = api.open(); s.failed())
    return s;
  int count = 0;
  if (Status s = api.check(api.cuDeviceGetCount(&count), "cuDeviceGetCount"); s.failed())
    return s;
  std::vector<CudaDeviceInfo> out;
  for (int i = 0; i < count; ++i) {
    CUdevice d;
    auto info = infoOf(api, i, d);
    if (!info)
      return info.error();
    out.push_back(*info);
  }
  return out;
}

Expected<std::unique_ptr<Device>> openCudaDevice(int index) {
  auto ctx = std::make_shared<Context>();
  cu::Api &api = ctx->api;
  if (Status s = api.open(); s.failed())
    return s;
  int count = 0;
  if (Status s = api.check(api.cuDeviceGetCount(&count), "cuDeviceGetCount"); s.failed())
    return s;
  if (count == 0)
    return makeError("cuda: the driver reports no device");
  if (index < 0)
    index = 0;
  if (index >= count)
    return makeError("cuda: no device " + std::to_string(index) + " (there are " +
                     std::to_string(count) + ")");
  auto info = infoOf(api, index, ctx->device);
  if (!info)
    return info.error();
  ctx->name = info->name;
  ctx->arch = info->arch;
  if (Status s = api.check(api.cuDevicePrimaryCtxRetain(&ctx->context, ctx->device),
                           "cuDevicePrimaryCtxRetain");
      s.failed())
    return s;
  return std::unique_ptr<Device>(std::make_unique<CudaDevice>(std::move(ctx)));
}

} // namespace kiln::runtime
