// Each subcommand registers its options and, when chosen, sets `action`.
#pragma once
#include <functional>

#include <CLI/CLI.hpp>

namespace ckv::cli {

CLI::App* add_run(CLI::App& app, std::function<int()>& action);
CLI::App* add_tokenize(CLI::App& app, std::function<int()>& action);
CLI::App* add_perplexity(CLI::App& app, std::function<int()>& action);
CLI::App* add_info(CLI::App& app, std::function<int()>& action);
CLI::App* add_bench(CLI::App& app, std::function<int()>& action);
CLI::App* add_profile(CLI::App& app, std::function<int()>& action);
CLI::App* add_identify_heads(CLI::App& app, std::function<int()>& action);
CLI::App* add_profile_layers(CLI::App& app, std::function<int()>& action);
CLI::App* add_eval(CLI::App& app, std::function<int()>& action);
CLI::App* add_serve(CLI::App& app, std::function<int()>& action);

}  // namespace ckv::cli
