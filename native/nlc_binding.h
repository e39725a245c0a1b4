// nlc_binding.h: how llm2clip_embd reaches node-llama-cpp 3.21.1's native objects.
//
// * layout pins of AddonContext/AddonModel (static_asserts),
// * the llama.cpp API resolved from the binding that owns a context (no DT_NEEDED on
//   libllama, so the cpu, cuda and vulkan prebuilts all work and no second copy loads),
// * unwrapping plus the runtime cross-checks every call goes through.
// Included once, by llm2clip_embd.cpp (single translation unit).
#pragma once

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "napi.h"
#include "llama.h"
#include "AddonContext.h"
#include "AddonModel.h"

#ifndef LLM2CLIP_NLC_VERSION
#error "LLM2CLIP_NLC_VERSION must be defined by native/build.mjs"
#endif
#ifndef LLM2CLIP_LLAMA_COMMIT
#define LLM2CLIP_LLAMA_COMMIT "unknown"
#endif

// ---- layout pins -------------------------------------------------------------------
// Offsets read from the shipped node-llama-cpp 3.21.1 llama-addon.node (objdump of
// AddonContext::GetContextSize, AddonModel::GetTrainContextSize and
// EnsureDraftContextIsCompatibleForSpeculative; identical in the cpu, cuda and vulkan
// linux-x64 prebuilts). If the headers we compile against ever disagree with the
// binary's layout, the build stops here instead of reading garbage at runtime.
#if !(defined(__linux__) && defined(__x86_64__))
#error "llm2clip_embd: layout offsets are only verified for linux-x64"
#endif
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
static_assert(offsetof(AddonContext, model) == 0x20, "AddonContext::model moved");
static_assert(offsetof(AddonContext, ctx) == 0xc8, "AddonContext::ctx moved");
static_assert(offsetof(AddonContext, disposed) == 0x158, "AddonContext::disposed moved");
static_assert(offsetof(AddonModel, model) == 0x88, "AddonModel::model moved");
static_assert(offsetof(AddonModel, vocab) == 0x90, "AddonModel::vocab moved");
static_assert(offsetof(AddonModel, disposed) == 0x12a, "AddonModel::disposed moved");
#pragma GCC diagnostic pop
static_assert(std::is_polymorphic<AddonContext>::value && std::is_polymorphic<AddonModel>::value,
              "vtable check below relies on a vptr at offset 0");

namespace {

// ---- libllama resolution -----------------------------------------------------------
struct LlamaApi {
    std::string addonPath;    // the llama-addon.node owning the context
    std::string libllamaPath; // where llama_decode was found
    const void* contextVptr = nullptr;
    const void* modelVptr = nullptr;
#define LLM2CLIP_FNS(X)                                                              \
    X(llama_decode) X(llama_synchronize) X(llama_n_batch) X(llama_n_ubatch)          \
    X(llama_n_ctx) X(llama_n_ctx_seq) X(llama_n_seq_max) X(llama_get_model)          \
    X(llama_get_memory) X(llama_memory_seq_pos_min) X(llama_memory_seq_pos_max)      \
    X(llama_memory_seq_rm) X(llama_get_logits_ith) X(llama_model_n_embd)             \
    X(llama_model_n_embd_inp) X(llama_model_get_vocab) X(llama_vocab_n_tokens)       \
    X(llama_model_rope_type)
#define LLM2CLIP_MEMBER(name) decltype(&::name) name = nullptr;
    LLM2CLIP_FNS(LLM2CLIP_MEMBER)
#undef LLM2CLIP_MEMBER
};

std::mutex apiMutex;
std::map<void*, LlamaApi> apiByHandle; // keyed by dlopen handle of the llama-addon.node

// Error with a machine-readable `code` so the TS side can map it to a typed error.
Napi::Error codedError(Napi::Env env, const std::string& code, const std::string& msg) {
    Napi::Error err = Napi::Error::New(env, "llm2clip native: " + msg);
    err.Set("code", Napi::String::New(env, code));
    return err;
}

std::string baseName(const std::string& p) {
    const auto slash = p.find_last_of('/');
    return slash == std::string::npos ? p : p.substr(slash + 1);
}

bool isLibllamaName(const std::string& base) {
    // libllama.so, libllama.v0.4.0.so, libllama.cuda.v0.4.0.so; not libllama-common.so
    return base.rfind("libllama.", 0) == 0 && base.find(".so") != std::string::npos;
}

int collectLibllama(struct dl_phdr_info* info, size_t, void* out) {
    if (info->dlpi_name != nullptr && isLibllamaName(baseName(info->dlpi_name)))
        static_cast<std::vector<std::string>*>(out)->push_back(info->dlpi_name);
    return 0;
}

std::vector<std::string> loadedLibllamas() {
    std::vector<std::string> found;
    dl_iterate_phdr(collectLibllama, &found);
    return found;
}

const void* vptrOf(const void* object) { return *static_cast<const void* const*>(object); }

// Finds the binding (llama-addon.node) whose AddonContext vtable `actx` points into, and
// resolves the llama.cpp API from that binding's own dependency tree.
const LlamaApi& resolveApi(Napi::Env env, const AddonContext* actx) {
    Dl_info di{};
    if (dladdr(vptrOf(actx), &di) == 0 || di.dli_fname == nullptr)
        throw codedError(env, "ERR_LLM2CLIP_LAYOUT", "object is not an AddonContext of a loaded node-llama-cpp binding");
    if (baseName(di.dli_fname) != "llama-addon.node")
        throw codedError(env, "ERR_LLM2CLIP_LAYOUT", std::string("object's vtable lives in ") + di.dli_fname + ", not in a llama-addon.node");
    // RTLD_NOLOAD: only ever returns the already-loaded binding, never loads a copy.
    void* handle = dlopen(di.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (handle == nullptr)
        throw codedError(env, "ERR_LLM2CLIP_SYMBOLS", std::string("cannot re-open ") + di.dli_fname);

    std::lock_guard<std::mutex> guard(apiMutex);
    auto cached = apiByHandle.find(handle);
    if (cached != apiByHandle.end()) {
        dlclose(handle); // drop the extra reference; the binding stays loaded by node
        return cached->second;
    }
    LlamaApi api;
    api.addonPath = di.dli_fname;
    // Itanium ABI: the vptr points two words past the vtable symbol's start.
    const auto vtableAddr = [&](const char* sym) -> const void* {
        void* vt = dlsym(handle, sym);
        return vt == nullptr ? nullptr : static_cast<const char*>(vt) + 2 * sizeof(void*);
    };
    api.contextVptr = vtableAddr("_ZTV12AddonContext");
    api.modelVptr = vtableAddr("_ZTV10AddonModel");
    if (api.contextVptr == nullptr || api.modelVptr == nullptr) {
        dlclose(handle);
        throw codedError(env, "ERR_LLM2CLIP_LAYOUT", "no AddonContext/AddonModel vtables in " + api.addonPath);
    }
    std::string missing;
#define LLM2CLIP_RESOLVE(name)                                                    \
    api.name = reinterpret_cast<decltype(&::name)>(dlsym(handle, #name));          \
    if (api.name == nullptr) missing += std::string(missing.empty() ? "" : ", ") + #name;
    LLM2CLIP_FNS(LLM2CLIP_RESOLVE)
#undef LLM2CLIP_RESOLVE
    if (!missing.empty()) {
        dlclose(handle);
        throw codedError(env, "ERR_LLM2CLIP_SYMBOLS", "libllama of " + api.addonPath + " lacks: " + missing);
    }
    Dl_info li{};
    if (dladdr(reinterpret_cast<void*>(api.llama_decode), &li) == 0 || li.dli_fname == nullptr ||
        !isLibllamaName(baseName(li.dli_fname))) {
        dlclose(handle);
        throw codedError(env, "ERR_LLM2CLIP_SYMBOLS", "llama_decode of " + api.addonPath + " does not come from a libllama");
    }
    api.libllamaPath = li.dli_fname;
    // keep `handle` open for the life of the process: the cached function pointers need it
    return apiByHandle.emplace(handle, std::move(api)).first->second;
}

// ---- unwrapping and cross-checks ---------------------------------------------------
struct Target {
    AddonContext* actx;
    AddonModel* amodel;
    const LlamaApi* api;
    llama_context* ctx;
    const llama_model* model;
};

void* unwrapAny(Napi::Env env, Napi::Value v, const char* what) {
    void* p = nullptr;
    if (!v.IsObject() || napi_unwrap(env, v, &p) != napi_ok || p == nullptr)
        throw codedError(env, "ERR_LLM2CLIP_ARGUMENT", std::string(what) + " is not a wrapped native object");
    return p;
}

Target resolveTarget(Napi::Env env, Napi::Value ctxValue, Napi::Value modelValue) {
    auto* actx = static_cast<AddonContext*>(unwrapAny(env, ctxValue, "context._ctx"));
    auto* amodel = static_cast<AddonModel*>(unwrapAny(env, modelValue, "model._model"));
    const LlamaApi& api = resolveApi(env, actx);
    // Exact dynamic-type checks: the vptrs must be the binding's own vtables.
    if (vptrOf(actx) != api.contextVptr)
        throw codedError(env, "ERR_LLM2CLIP_LAYOUT", "context._ctx is not an AddonContext of " + api.addonPath);
    if (vptrOf(amodel) != api.modelVptr || actx->model != amodel)
        throw codedError(env, "ERR_LLM2CLIP_LAYOUT", "AddonModel does not belong to this AddonContext");
    if (actx->disposed || actx->ctx == nullptr || amodel->disposed || amodel->model == nullptr)
        throw codedError(env, "ERR_LLM2CLIP_DISPOSED", "context or model is disposed");
    if (api.llama_get_model(actx->ctx) != amodel->model)
        throw codedError(env, "ERR_LLM2CLIP_LAYOUT", "llama_get_model(ctx) differs from AddonModel::model");
    return Target{actx, amodel, &api, actx->ctx, amodel->model};
}

bool isMrope(const LlamaApi& api, const llama_model* model) {
    const auto rope = api.llama_model_rope_type(model);
    return rope == LLAMA_ROPE_TYPE_MROPE || rope == LLAMA_ROPE_TYPE_IMROPE;
}

} // namespace
