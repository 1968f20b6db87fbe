// compresskv info: what a model file holds.
#include <cstdio>
#include <map>

#include "cli/common.h"
#include "cli/subcommands.h"
#include "tokenizer/chat_template.h"

namespace ckv::cli {

CLI::App* add_info(CLI::App& app, std::function<int()>& action) {
  static ModelArgs args;  // lives for the program's run
  auto* a = &args;
  CLI::App* c = app.add_subcommand("info", "print a model's architecture and settings");
  add_model_args(c, *a);
  c->callback([a, &action] {
    action = [a] {
      auto m = load(*a);
      const ModelConfig& c = m->config;
      std::printf("model:          %s (%s)\n", m->name.c_str(), m->format.c_str());
      std::printf("architecture:   %s\n", c.arch.c_str());
      std::printf("layers:         %d\n", c.n_layers);
      std::printf("hidden:         %d (feed-forward %d)\n", c.dim, c.hidden_dim);
      std::printf("heads:          %d\n", c.n_heads);
      std::printf("kv heads:       %d (group size %d)\n", c.n_kv_heads, c.n_heads / c.n_kv_heads);
      std::printf("head dim:       %d\n", c.head_dim);
      std::printf("vocab:          %d\n", c.vocab_size);
      std::printf("context:        %d\n", c.context);
      std::printf("rope:           theta %g, scaling %s", c.rope.theta, c.rope.scaling.c_str());
      if (c.rope.scaling == "llama3" && c.rope.freq_factors.empty())
        std::printf(" (factor %g, low %g, high %g, original context %d)", c.rope.factor, c.rope.low_freq_factor,
                    c.rope.high_freq_factor, c.rope.original_context);
      if (c.rope.scaling == "linear") std::printf(" (factor %g)", c.rope.factor);
      std::printf(", %s pairs\n", c.rope.interleaved ? "interleaved" : "half-split");
      std::printf("norm eps:       %g\n", c.norm_eps);
      std::printf("extras:         %s%s%s\n", c.qkv_bias ? "qkv-bias " : "", c.qk_norm ? "qk-norm " : "",
                  c.tied_output ? "tied-output" : "");
      std::map<std::string, int> types;
      auto count = [&](const Tensor& t) { types[dtype_name(t.type)]++; };
      count(m->tok_embd);
      if (!c.tied_output) count(m->output);
      count(m->output_norm);
      for (auto& l : m->layers)
        for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm,
                                &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
          if (!t->empty()) count(*t);
      std::printf("tensor types:  ");
      for (auto& [k, n] : types) std::printf(" %s x%d", k.c_str(), n);
      std::printf("\n");
      const TokenizerData& v = m->vocab;
      if (v.tokens.empty()) {
        std::printf("tokenizer:      none\n");
      } else {
        std::printf("tokenizer:      %s%s, %zu tokens, bos %d, eos %d, add_bos %s\n", v.kind.c_str(),
                    v.kind == "bpe" ? (" (pre " + v.pre + ")").c_str() : "", v.tokens.size(), v.bos, v.eos,
                    v.add_bos ? "yes" : "no");
        std::string fam = "none";
        if (!v.chat_template.empty()) {
          try {
            fam = make_chat_template(v.chat_template, "").family;
          } catch (const std::exception&) {
            fam = "unknown";
          }
        }
        std::printf("chat template:  %s\n", fam.c_str());
      }
      std::printf("fingerprint:    %s\n", m->fingerprint().c_str());
      return 0;
    };
  });
  return c;
}

}  // namespace ckv::cli
