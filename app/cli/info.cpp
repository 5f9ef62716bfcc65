// `strand-cli info [--model M]`: what a model file is, and how much memory its state needs.
#include <iostream>

#include "cli.h"
#include "strand/devices.h"

namespace strand::cli {

int run_info(std::span<const std::string> args) {
  const Options options(args, {{"model"}});
  const std::string path = model_path_or_default(options.get("model"));
  const std::shared_ptr<const Model> model = load_model(path);
  const ModelConfig& c = model->config();

  std::cout << "model:          " << c.name << "\n"
            << "file:           " << path << "\n"
            << "id:             " << model->id() << "\n"
            << "parameters:     " << model->parameter_count() << "\n"
            << "video:          " << c.width << "x" << c.height << " at " << c.fps << " fps, "
            << c.frames_per_block << " frames per block\n"
            << "latent:         " << c.latent_channels << "x" << c.latent_height() << "x"
            << c.latent_width() << " per frame, " << c.tokens_per_block() << " tokens per block\n"
            << "layers:         " << c.layers.size() << " (" << c.hybrid_layers() << " hybrid, "
            << c.softmax_layers() << " softmax_kv)\n"
            << "memory state:   " << model->fixed_state_bytes() << " bytes fixed + "
            << model->state_bytes_per_block() << " bytes per block";
  if (model->state_bytes_per_block() > 0 && c.kv_window > 0) {
    // The softmax_kv caches stop growing once the sink and window are full.
    const size_t cap = static_cast<size_t>(c.kv_window) + static_cast<size_t>(c.kv_sink);
    std::cout << " (at most " << model->fixed_state_bytes() + cap * model->state_bytes_per_block()
              << " bytes: window " << c.kv_window << " + sink " << c.kv_sink << " blocks)";
  }
  std::cout << "\ndevices:";
  for (const ComputeDevice& device : compute_devices()) {
    std::cout << "\n  " << device.kind << ": " << device.description
              << (device.usable_by_engine ? "" : " (not used yet: the CUDA backend is not built)");
  }
  std::cout << "\nconfig:\n" << nlohmann::json::parse(c.to_json()).dump(2) << "\n";
  return 0;
}

}  // namespace strand::cli
