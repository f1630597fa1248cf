// clip_text.h: the CLIP text encoder (HuggingFace CLIPTextModel semantics) on the Backend
// interface, plus Live2Diff's clip-skip prompt embedding. The "clip_text" model kind
// (clip_text.cpp) wraps it for the tensor-map ABI.
//
// Forward (pre-LN transformer): h0 = token_embedding(ids) + position_embedding[0..L);
// per layer: h += out_proj(causal_mha(layer_norm1(h))); h += fc2(act(fc1(layer_norm2(h))));
// last_hidden_state = final_layer_norm(h_n); hidden_states = [h0, h1, ..., h_n];
// pooler_output = last_hidden_state at the EOS position (argmax(ids) when config eos_token_id == 2,
// HF's legacy rule, else the first position holding eos_token_id).
#pragma once

#include <string>
#include <vector>

#include "../../core/backend.h"
#include "../../core/json.h"
#include "../weights.h"

namespace l2d {

struct ClipTextOutputs {
  Tensor last_hidden_state;           // [B, L, C]
  Tensor pooler_output;               // [B, C]
  std::vector<Tensor> hidden_states;  // n_layers + 1 tensors [B, L, C], embedding output first
};

class ClipTextEncoder {
 public:
  // config: the HF text_encoder config.json object; weight names are prefix + HF CLIPTextModel
  // names without "text_model." (the default prefix "text_model." reads an HF checkpoint as is).
  ClipTextEncoder(Backend& be, const Json& config, WeightLoader& weights, const std::string& prefix = "text_model.");

  // ids: host integer tensor [B, L], 1 <= L <= max_position_embeddings. Out-of-vocabulary ids throw
  // L2D_ERR_INVALID_ARGUMENT naming the position.
  ClipTextOutputs forward(const HostTensor& ids) const;

  // Live2Diff's _encode_prompt: clip_skip < 0 (None) -> last_hidden_state; k >= 0 ->
  // final_layer_norm(hidden_states[-(k + 1)]), k <= num_layers() (else L2D_ERR_INVALID_ARGUMENT).
  Tensor prompt_embeds(const ClipTextOutputs& out, int clip_skip) const;

  int hidden_size() const { return hidden_; }
  int num_layers() const { return int(layers_.size()); }
  int max_positions() const { return max_pos_; }

 private:
  struct Layer {
    Tensor ln1_w, ln1_b, ln2_w, ln2_b;
    Tensor qkv_w, qkv_b, o_w, o_b;  // qkv: [q_proj; k_proj; v_proj] [3C, C] (+ bias), packed at load
    Tensor fc1_w, fc1_b, fc2_w, fc2_b;
  };

  Backend& be_;
  int hidden_ = 0, heads_ = 0, vocab_ = 0, max_pos_ = 0;
  int64_t eos_token_id_ = 2;
  float eps_ = 1e-5f;
  Unary act_ = Unary::QuickGelu;
  Tensor tok_emb_, pos_emb_, final_w_, final_b_;
  std::vector<Layer> layers_;
};

}  // namespace l2d
