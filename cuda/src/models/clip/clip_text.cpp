// clip_text.cpp: the CLIP text encoder (see clip_text.h) and the "clip_text" model kind.
//   config = HF text_encoder config.json; weights = its safetensors (HF CLIPTextModel names).
//   method "encode": io "input_ids" int [B, L] (L <= max_position_embeddings), optional
//   "clip_skip" int [1] -> "last_hidden_state" [B, L, C], "pooler_output" [B, C],
//   "hidden_states" [n_layers + 1, B, L, C] and, with clip_skip, "prompt_embeds" [B, L, C]
//   = final_layer_norm(hidden_states[-(clip_skip + 1)]) (Live2Diff's _encode_prompt).
#include "clip_text.h"

#include "../../core/config.h"
#include "../model.h"

namespace l2d {

namespace {

Unary activation(const std::string& name) {
  if (name == "quick_gelu") return Unary::QuickGelu;
  if (name == "gelu") return Unary::GeluErf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Unary::GeluTanh;
  if (name == "relu") return Unary::Relu;
  fail(L2D_ERR_UNSUPPORTED, "clip_text: hidden_act \"", name, "\" is not supported");
}

}  // namespace

// Bounds: CLIP ViT-L has hidden 768, 12 heads, 49408 tokens, 77 positions, 12 layers; the limits
// keep every weight product far from overflow and are refused with the key named.
ClipTextEncoder::ClipTextEncoder(Backend& be, const Json& config, WeightLoader& w, const std::string& prefix)
    : be_(be) {
  const ConfigReader c(config, "clip_text config");
  hidden_ = int(c.integer("hidden_size", 1, 16384));
  heads_ = int(c.integer("num_attention_heads", 1, 1024));
  c.require_divisible("hidden_size", hidden_, "num_attention_heads", heads_);
  vocab_ = int(c.integer("vocab_size", 1, 1 << 20));
  max_pos_ = int(c.integer("max_position_embeddings", 1, 1 << 16));
  const int inter = int(c.integer("intermediate_size", 1, 1 << 17));
  const int n_layers = int(c.integer("num_hidden_layers", 1, 256));
  eps_ = float(c.number("layer_norm_eps", 1e-5, 1e-12, 1.0));
  eos_token_id_ = c.integer("eos_token_id", 2, 0, (1 << 20) - 1);
  act_ = activation(c.string("hidden_act", "quick_gelu"));

  const int64_t C = hidden_;
  tok_emb_ = w.get(prefix + "embeddings.token_embedding.weight", {vocab_, C});
  pos_emb_ = w.get(prefix + "embeddings.position_embedding.weight", {max_pos_, C});
  for (int i = 0; i < n_layers; ++i) {
    const std::string p = prefix + "encoder.layers." + std::to_string(i) + ".";
    Layer l;
    l.ln1_w = w.get(p + "layer_norm1.weight", {C});
    l.ln1_b = w.get(p + "layer_norm1.bias", {C});
    l.ln2_w = w.get(p + "layer_norm2.weight", {C});
    l.ln2_b = w.get(p + "layer_norm2.bias", {C});
    // One QKV projection: the three HF linears packed into one [3C, C] weight and [3C] bias.
    const auto proj = [&](const char* name) { return w.get(p + "self_attn." + name + ".weight", {C, C}); };
    const auto bias = [&](const char* name) { return w.get(p + "self_attn." + name + ".bias", {C}); };
    l.qkv_w = be_.concat({proj("q_proj"), proj("k_proj"), proj("v_proj")}, 0);
    l.qkv_b = be_.concat({bias("q_proj"), bias("k_proj"), bias("v_proj")}, 0);
    l.o_w = w.get(p + "self_attn.out_proj.weight", {C, C});
    l.o_b = w.get(p + "self_attn.out_proj.bias", {C});
    l.fc1_w = w.get(p + "mlp.fc1.weight", {inter, C});
    l.fc1_b = w.get(p + "mlp.fc1.bias", {inter});
    l.fc2_w = w.get(p + "mlp.fc2.weight", {C, inter});
    l.fc2_b = w.get(p + "mlp.fc2.bias", {C});
    layers_.push_back(std::move(l));
  }
  final_w_ = w.get(prefix + "final_layer_norm.weight", {C});
  final_b_ = w.get(prefix + "final_layer_norm.bias", {C});
}

ClipTextOutputs ClipTextEncoder::forward(const HostTensor& ids_host) const {
  if (ids_host.dtype != L2D_I64 && ids_host.dtype != L2D_I32)
    fail(L2D_ERR_INVALID_ARGUMENT, "clip_text: input_ids must be an integer tensor, got ", dtype_name(ids_host.dtype));
  if (ids_host.shape.size() != 2 || ids_host.shape[0] < 1 || ids_host.shape[1] < 1 || ids_host.shape[1] > max_pos_)
    fail(L2D_ERR_INVALID_ARGUMENT, "clip_text: input_ids must be [B, L] with 1 <= L <= ", max_pos_, ", got ",
         shape_str(ids_host.shape));
  const int64_t B = ids_host.shape[0], L = ids_host.shape[1];
  const std::vector<int64_t> ids = ids_host.to_i64();
  for (int64_t i = 0; i < B * L; ++i)
    if (ids[size_t(i)] < 0 || ids[size_t(i)] >= vocab_)
      fail(L2D_ERR_INVALID_ARGUMENT, "clip_text: input_ids[", i / L, ", ", i % L, "] = ", ids[size_t(i)],
           " is outside the vocabulary (0..", vocab_ - 1, ")");

  ClipTextOutputs out;
  Tensor h = be_.binary(be_.embedding(be_.from_host(ids_host), tok_emb_), be_.slice(pos_emb_, 0, 0, L), Binary::Add);
  out.hidden_states.push_back(h);
  for (const Layer& l : layers_) {
    const Tensor x = be_.layer_norm(h, l.ln1_w, l.ln1_b, eps_);
    const Tensor a = be_.self_attention(be_.linear(x, l.qkv_w, &l.qkv_b), heads_, AttnMask::Causal);
    h = be_.binary(h, be_.linear(a, l.o_w, &l.o_b), Binary::Add);
    const Tensor m = be_.unary(be_.linear(be_.layer_norm(h, l.ln2_w, l.ln2_b, eps_), l.fc1_w, &l.fc1_b), act_);
    h = be_.binary(h, be_.linear(m, l.fc2_w, &l.fc2_b), Binary::Add);
    out.hidden_states.push_back(h);
  }
  out.last_hidden_state = be_.layer_norm(h, final_w_, final_b_, eps_);

  // EOS position per row (from the host ids: no device sync).
  std::vector<Tensor> rows;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t* row = ids.data() + b * L;
    int64_t pos = 0;
    if (eos_token_id_ == 2) {  // legacy HF rule: argmax of the ids (first maximum)
      for (int64_t i = 1; i < L; ++i)
        if (row[i] > row[pos]) pos = i;
    } else {  // first position holding eos_token_id (0 when there is none, as torch's argmax of zeros)
      for (int64_t i = 0; i < L; ++i)
        if (row[i] == eos_token_id_) {
          pos = i;
          break;
        }
    }
    rows.push_back(be_.slice(be_.slice(out.last_hidden_state, 0, b, b + 1), 1, pos, pos + 1));
  }
  out.pooler_output = (rows.size() == 1 ? rows[0] : be_.concat(rows, 0)).reshape({B, hidden_});
  return out;
}

Tensor ClipTextEncoder::prompt_embeds(const ClipTextOutputs& out, int clip_skip) const {
  if (clip_skip < 0) return out.last_hidden_state;
  const int n = int(out.hidden_states.size());
  if (clip_skip >= n)
    fail(L2D_ERR_INVALID_ARGUMENT, "clip_text: clip_skip ", clip_skip, " is out of range (0..", n - 1,
         " for a text encoder with ", n - 1, " layers)");
  return be_.layer_norm(out.hidden_states[size_t(n - 1 - clip_skip)], final_w_, final_b_, eps_);
}

namespace {

class ClipTextModel final : public Model {
 public:
  ClipTextModel(Backend& be, const Json& config, const TensorMap& weights)
      : be_(be), net_(make(be, config, weights)) {}

  void run(const std::string& method, TensorMap& io) override {
    if (method != "encode") unknown_method("clip_text", method);
    const HostTensor& ids = io.at("input_ids", "clip_text encode");
    int clip_skip = -1;
    if (io.has("clip_skip")) {
      const HostTensor& cs = io.at("clip_skip", "clip_text encode");
      if (cs.numel() != 1 || (cs.dtype != L2D_I64 && cs.dtype != L2D_I32))
        fail(L2D_ERR_INVALID_ARGUMENT, "clip_text: clip_skip must be one integer, got ", dtype_name(cs.dtype), " ",
             shape_str(cs.shape));
      const int64_t v = cs.to_i64()[0];
      if (v < 0 || v > net_.num_layers())
        fail(L2D_ERR_INVALID_ARGUMENT, "clip_text: clip_skip ", v, " is out of range (0..", net_.num_layers(), ")");
      clip_skip = int(v);
    }
    const ClipTextOutputs out = net_.forward(ids);
    io.put("last_hidden_state", be_.to_host(out.last_hidden_state));
    io.put("pooler_output", be_.to_host(out.pooler_output));
    std::vector<Tensor> hs;
    for (const Tensor& t : out.hidden_states) {
      Shape s = t.shape();
      s.insert(s.begin(), 1);
      hs.push_back(t.reshape(s));
    }
    io.put("hidden_states", be_.to_host(be_.concat(hs, 0)));
    if (clip_skip >= 0) io.put("prompt_embeds", be_.to_host(net_.prompt_embeds(out, clip_skip)));
  }

 private:
  static ClipTextEncoder make(Backend& be, const Json& config, const TensorMap& weights) {
    WeightLoader w(be, weights, "clip_text");
    ClipTextEncoder net(be, config, w);
    // HF checkpoints of older transformers versions carry the position_ids buffer.
    w.check_all_used({"position_ids"});
    return net;
  }

  Backend& be_;
  ClipTextEncoder net_;
};

const ModelRegistrar kRegistrar("clip_text", [](Backend& be, const Json& config, const TensorMap& weights) {
  return std::unique_ptr<Model>(new ClipTextModel(be, config, weights));
});

}  // namespace
}  // namespace l2d
