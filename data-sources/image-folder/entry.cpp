#include <vaelab/plugin.hpp>
#include <vaelab_plugin_defaults.h>

#include "image_folder_source.hpp"

VAELAB_PLUGIN(
    vaelab::describe<vaelab::DataSource, vaelab::plugins::image_folder::ImageFolderSource>(
        "image-folder", "0.1.0", "PNG and JPEG images in a folder per class, resized or padded",
        VAELAB_PLUGIN_DEFAULTS_TOML))
