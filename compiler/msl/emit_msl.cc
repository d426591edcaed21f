// MSL through SPIRV-Cross's C API: parse kiln's SPIR-V, cross-compile for Metal.
#include "compiler/msl/emit_msl.h"

#include <memory>

#include <spirv_cross/spirv_cross_c.h>

#include "compiler/spirv/emit_spirv.h"

namespace kiln::compiler {

Expected<std::string> emitMsl(const std::vector<uint32_t> &spirv, const std::string &name) {
  spvc_context raw = nullptr;
  if (spvc_context_create(&raw) != SPVC_SUCCESS)
    return makeError("SPIRV-Cross: cannot create a context");
  std::unique_ptr<spvc_context_s, void (*)(spvc_context)> ctx(raw, spvc_context_destroy);
  auto fail = [&](const char *what) {
    return makeError(std::string("SPIRV-Cross: ") + what + ": " +
                     spvc_context_get_last_error_string(ctx.get()));
  };
  spvc_parsed_ir ir = nullptr;
  if (spvc_context_parse_spirv(ctx.get(), spirv.data(), spirv.size(), &ir) != SPVC_SUCCESS)
    return fail("parsing the SPIR-V");
  spvc_compiler msl = nullptr;
  if (spvc_context_create_compiler(ctx.get(), SPVC_BACKEND_MSL, ir,
                                   SPVC_CAPTURE_MODE_TAKE_OWNERSHIP, &msl) != SPVC_SUCCESS)
    return fail("making the MSL compiler");
  if (spvc_compiler_rename_entry_point(msl, kSpirvEntryPoint, name.c_str(),
                                       SpvExecutionModelGLCompute) != SPVC_SUCCESS)
    return fail("naming the kernel");
  spvc_compiler_options options = nullptr;
  if (spvc_compiler_create_compiler_options(msl, &options) != SPVC_SUCCESS ||
      spvc_compiler_options_set_uint(options, SPVC_COMPILER_OPTION_MSL_VERSION,
                                     SPVC_MAKE_MSL_VERSION(2, 1, 0)) != SPVC_SUCCESS ||
      spvc_compiler_install_compiler_options(msl, options) != SPVC_SUCCESS)
    return fail("setting the MSL options");
  const char *source = nullptr;
  if (spvc_compiler_compile(msl, &source) != SPVC_SUCCESS)
    return fail("compiling to MSL");
  return std::string(source);
}

} // namespace kiln::compiler
