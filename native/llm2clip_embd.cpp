// llm2clip_embd: decode a llama_batch whose `embd` is set (image features) into the
// llama_context behind a node-llama-cpp 3.21.1 LlamaContext.
//
// node-llama-cpp can only decode token ids. This companion addon reaches its native
// AddonContext/AddonModel (napi_unwrap works across addons: the wrap lives in a
// per-isolate private slot), and runs llama_decode on a libuv worker. The JS side
// (src/llm/inject.ts) holds node-llama-cpp's own locks around every call here, so
// nothing else touches the llama_context meanwhile. How the native objects and libllama
// are reached and checked is in nlc_binding.h.

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "nlc_binding.h"

namespace {

// ---- decode worker -----------------------------------------------------------------
class DecodeWorker : public Napi::AsyncWorker {
  public:
    DecodeWorker(Napi::Env env, const Target& t, Napi::Object ctxObj, Napi::Object modelObj,
                 Napi::Int32Array cancel, llama_seq_id seq, llama_pos start, int32_t nRows,
                 int32_t nEmbd, bool wantLogits, const float* rows)
        : Napi::AsyncWorker(env, "llm2clipDecodeEmbeddings"), deferred(Napi::Promise::Deferred::New(env)),
          api(t.api), ctx(t.ctx), seq(seq), start(start), nRows(nRows), nEmbd(nEmbd), wantLogits(wantLogits),
          nVocab(t.api->llama_vocab_n_tokens(t.api->llama_model_get_vocab(t.model))),
          nBatch(static_cast<int32_t>(t.api->llama_n_batch(t.ctx))),
          // copied before the thread hop: the caller may reuse or detach its buffer
          embd(rows, rows + static_cast<size_t>(nRows) * nEmbd), cancelFlag(cancel.Data()) {
        // keep the JS objects (and so the native ones) alive while the worker runs
        ctxRef = Napi::Persistent(ctxObj);
        modelRef = Napi::Persistent(modelObj);
        cancelRef = Napi::Persistent(static_cast<Napi::Object>(cancel));
    }

    Napi::Promise promise() { return deferred.Promise(); }

  protected:
    void Execute() override {
        try {
            run();
        } catch (const std::exception& e) { // e.g. bad_alloc: still roll back
            fail("ERR_LLM2CLIP_DECODE", e.what());
        }
    }

    void run() {
        const int32_t chunk = std::max<int32_t>(1, std::min(nBatch, nRows));
        std::vector<llama_pos> pos(chunk);
        std::vector<int32_t> nSeqId(chunk, 1);
        std::vector<llama_seq_id> seqIds(chunk, seq);
        std::vector<llama_seq_id*> seqPtrs(chunk);
        std::vector<int8_t> outputs(chunk, 0);
        for (int32_t i = 0; i < chunk; i++) seqPtrs[i] = &seqIds[i];

        const auto t0 = std::chrono::steady_clock::now();
        for (int32_t off = 0; off < nRows; off += chunk) {
            if (__atomic_load_n(cancelFlag, __ATOMIC_ACQUIRE) != 0)
                return fail("ERR_LLM2CLIP_ABORTED", "injection aborted");
            const int32_t n = std::min(chunk, nRows - off);
            for (int32_t i = 0; i < n; i++) pos[i] = start + off + i;
            std::fill(outputs.begin(), outputs.end(), 0);
            const bool last = off + n == nRows;
            if (last && wantLogits) outputs[n - 1] = 1;
            // the batch points into our buffers; llama_batch_init would only add a copy
            llama_batch batch{n, nullptr, embd.data() + static_cast<size_t>(off) * nEmbd,
                              pos.data(), nSeqId.data(), seqPtrs.data(), outputs.data()};
            const int32_t rc = api->llama_decode(ctx, batch);
            if (rc != 0)
                return fail("ERR_LLM2CLIP_DECODE", "llama_decode returned " + std::to_string(rc) +
                                                       " at row " + std::to_string(off));
            chunks++;
        }
        api->llama_synchronize(ctx);
        if (wantLogits) {
            const float* l = api->llama_get_logits_ith(ctx, -1);
            if (l == nullptr) return fail("ERR_LLM2CLIP_DECODE", "no logits for the last row");
            logits.assign(l, l + nVocab);
        }
        decodeMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }

    void OnOK() override {
        Napi::Env env = Env();
        Napi::Object res = Napi::Object::New(env);
        if (wantLogits) {
            auto arr = Napi::Float32Array::New(env, logits.size());
            std::memcpy(arr.Data(), logits.data(), logits.size() * sizeof(float));
            res.Set("logits", arr);
        } else {
            res.Set("logits", env.Null());
        }
        res.Set("chunks", Napi::Number::New(env, chunks));
        res.Set("decodeMs", Napi::Number::New(env, decodeMs));
        deferred.Resolve(res);
    }

    void OnError(const Napi::Error& e) override {
        Napi::Env env = Env();
        Napi::Error err = codedError(env, code.empty() ? "ERR_LLM2CLIP_DECODE" : code, e.Message());
        err.Set("rolledBack", Napi::Boolean::New(env, rolledBack));
        deferred.Reject(err.Value());
    }

  private:
    // Any failure removes every cell this call may have written, so the KV matches
    // the JS bookkeeping (which is only advanced on success).
    void fail(const std::string& errCode, const std::string& msg) {
        rolledBack = api->llama_memory_seq_rm(api->llama_get_memory(ctx), seq, start, -1);
        code = errCode;
        SetError(msg);
    }

    Napi::Promise::Deferred deferred;
    Napi::ObjectReference ctxRef, modelRef, cancelRef;
    const LlamaApi* api;
    llama_context* ctx;
    llama_seq_id seq;
    llama_pos start;
    int32_t nRows, nEmbd;
    bool wantLogits, rolledBack = false;
    int32_t nVocab, nBatch, chunks = 0;
    std::vector<float> embd, logits;
    int32_t* cancelFlag;
    std::string code;
    double decodeMs = 0;
};

// ---- exports -----------------------------------------------------------------------
Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object res = Napi::Object::New(env);
    res.Set("nodeLlamaCppVersion", LLM2CLIP_NLC_VERSION);
    res.Set("llamaCppCommit", LLM2CLIP_LLAMA_COMMIT);
    res.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
    const auto libs = loadedLibllamas();
    auto arr = Napi::Array::New(env, libs.size());
    for (size_t i = 0; i < libs.size(); i++) arr.Set(static_cast<uint32_t>(i), libs[i]);
    res.Set("loadedLibllamas", arr);
    return res;
}

// attach(ctx, model) -> facts the TS side validates against (widths, batch, rope type)
Napi::Value Attach(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Target t = resolveTarget(env, info[0], info[1]);
    const LlamaApi& a = *t.api;
    Napi::Object res = Napi::Object::New(env);
    res.Set("addonPath", a.addonPath);
    res.Set("libllamaPath", a.libllamaPath);
    res.Set("nEmbd", Napi::Number::New(env, static_cast<double>(a.llama_model_n_embd(t.model))));
    res.Set("nEmbdInp", Napi::Number::New(env, static_cast<double>(a.llama_model_n_embd_inp(t.model))));
    res.Set("nVocab", Napi::Number::New(env, static_cast<double>(a.llama_vocab_n_tokens(a.llama_model_get_vocab(t.model)))));
    res.Set("nBatch", Napi::Number::New(env, static_cast<double>(a.llama_n_batch(t.ctx))));
    res.Set("nUbatch", Napi::Number::New(env, static_cast<double>(a.llama_n_ubatch(t.ctx))));
    res.Set("nCtx", Napi::Number::New(env, static_cast<double>(a.llama_n_ctx(t.ctx))));
    res.Set("nCtxSeq", Napi::Number::New(env, static_cast<double>(a.llama_n_ctx_seq(t.ctx))));
    res.Set("nSeqMax", Napi::Number::New(env, static_cast<double>(a.llama_n_seq_max(t.ctx))));
    res.Set("mrope", Napi::Boolean::New(env, isMrope(a, t.model)));
    return res;
}

// seqPosRange(ctx, model, seqId) -> [pos_min, pos_max] of the sequence's KV cells (-1 when empty)
Napi::Value SeqPosRange(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Target t = resolveTarget(env, info[0], info[1]);
    const auto seq = static_cast<llama_seq_id>(info[2].As<Napi::Number>().Int32Value());
    llama_memory_t mem = t.api->llama_get_memory(t.ctx);
    auto res = Napi::Array::New(env, 2);
    res.Set(0u, Napi::Number::New(env, t.api->llama_memory_seq_pos_min(mem, seq)));
    res.Set(1u, Napi::Number::New(env, t.api->llama_memory_seq_pos_max(mem, seq)));
    return res;
}

// decodeEmbeddings(ctx, model, seqId, startPos, rows: Float32Array, nRows, wantLogits, cancel: Int32Array)
Napi::Value DecodeEmbeddingsImpl(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Target t = resolveTarget(env, info[0], info[1]);
    if (info.Length() < 8 || !info[2].IsNumber() || !info[3].IsNumber() || !info[4].IsTypedArray() ||
        !info[5].IsNumber() || !info[6].IsBoolean() || !info[7].IsTypedArray())
        throw codedError(env, "ERR_LLM2CLIP_ARGUMENT", "decodeEmbeddings: bad arguments");
    auto rows = info[4].As<Napi::TypedArray>();
    auto cancel = info[7].As<Napi::TypedArray>();
    if (rows.TypedArrayType() != napi_float32_array || cancel.TypedArrayType() != napi_int32_array ||
        cancel.ElementLength() < 1)
        throw codedError(env, "ERR_LLM2CLIP_ARGUMENT", "decodeEmbeddings: rows must be a Float32Array, cancel an Int32Array");
    const LlamaApi& a = *t.api;
    const auto seq = static_cast<llama_seq_id>(info[2].As<Napi::Number>().Int32Value());
    const auto start = static_cast<llama_pos>(info[3].As<Napi::Number>().Int32Value());
    const int32_t nRows = info[5].As<Napi::Number>().Int32Value();
    const int32_t nEmbd = a.llama_model_n_embd_inp(t.model);
    if (nRows <= 0 || rows.ElementLength() != static_cast<size_t>(nRows) * static_cast<size_t>(nEmbd))
        throw codedError(env, "ERR_LLM2CLIP_WIDTH", "rows hold " + std::to_string(rows.ElementLength()) +
                                                        " floats, expected " + std::to_string(nRows) + " x " +
                                                        std::to_string(nEmbd));
    if (seq < 0 || static_cast<uint32_t>(seq) >= a.llama_n_seq_max(t.ctx))
        throw codedError(env, "ERR_LLM2CLIP_ARGUMENT", "sequence id out of range");
    if (isMrope(a, t.model))
        throw codedError(env, "ERR_LLM2CLIP_UNSUPPORTED", "M-RoPE models need 4 positions per embedding");
    // Only ever append: the KV must end right before `start`, else the positions
    // would overlap existing cells or leave a hole.
    const llama_pos posMax = a.llama_memory_seq_pos_max(a.llama_get_memory(t.ctx), seq);
    if (start != posMax + 1)
        throw codedError(env, "ERR_LLM2CLIP_POSITION", "start position " + std::to_string(start) +
                                                           " is not the sequence's next KV position " +
                                                           std::to_string(posMax + 1));
    if (static_cast<int64_t>(start) + nRows > static_cast<int64_t>(a.llama_n_ctx_seq(t.ctx)))
        throw codedError(env, "ERR_LLM2CLIP_CONTEXT", "rows do not fit in the sequence's context");
    const auto* data = reinterpret_cast<const float*>(static_cast<const uint8_t*>(rows.ArrayBuffer().Data()) + rows.ByteOffset());
    auto* worker = new DecodeWorker(env, t, info[0].As<Napi::Object>(), info[1].As<Napi::Object>(),
                                    info[7].As<Napi::Int32Array>(), seq, start, nRows, nEmbd,
                                    info[6].As<Napi::Boolean>().Value(), data);
    Napi::Promise p = worker->promise();
    worker->Queue();
    return p;
}

// Promise-returning: refusals reject too, so callers handle a single error path.
Napi::Value DecodeEmbeddings(const Napi::CallbackInfo& info) {
    try {
        return DecodeEmbeddingsImpl(info);
    } catch (const Napi::Error& e) {
        auto deferred = Napi::Promise::Deferred::New(info.Env());
        deferred.Reject(e.Value());
        return deferred.Promise();
    }
}

// lastLogits(ctx, model) -> Float32Array of the last output row of the context's last
// decode, or null. Callers must hold the context lock (diagnostics and tests).
Napi::Value LastLogits(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const Target t = resolveTarget(env, info[0], info[1]);
    const float* l = t.api->llama_get_logits_ith(t.ctx, -1);
    if (l == nullptr) return env.Null();
    const auto nVocab = t.api->llama_vocab_n_tokens(t.api->llama_model_get_vocab(t.model));
    auto arr = Napi::Float32Array::New(env, static_cast<size_t>(nVocab));
    std::memcpy(arr.Data(), l, static_cast<size_t>(nVocab) * sizeof(float));
    return arr;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
    exports.Set("info", Napi::Function::New(env, Info, "info"));
    exports.Set("attach", Napi::Function::New(env, Attach, "attach"));
    exports.Set("seqPosRange", Napi::Function::New(env, SeqPosRange, "seqPosRange"));
    exports.Set("decodeEmbeddings", Napi::Function::New(env, DecodeEmbeddings, "decodeEmbeddings"));
    exports.Set("lastLogits", Napi::Function::New(env, LastLogits, "lastLogits"));
    return exports;
}

} // namespace

NODE_API_MODULE(llm2clip_embd, Init)
