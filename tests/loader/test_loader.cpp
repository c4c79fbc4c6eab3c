// Loader tests (docs/architecture.md, "The plugin boundary"): every refusal
// category has a tiny deliberately broken plugin in fixtures/, and a test here asserting its
// exact category and the text of its message. The good fixtures, one of each kind, show what an
// accepted plugin looks like; the ABI layout tripwires fail the build when the C envelope moves.
#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/sinks/ostream_sink.h>

#include <vaelab/abi/plugin_abi.h>
#include <vaelab/build_info.h>
#include <vaelab/data_source.hpp>
#include <vaelab/error.hpp>
#include <vaelab/generator.hpp>
#include <vaelab/log.hpp>
#include <vaelab/registry.hpp>

#include "fixtures/foreign_fingerprint.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using vaelab::PluginError;
using vaelab::PluginRecord;
using vaelab::Refusal;
using vaelab::Registry;

namespace {

const fs::path kFixtureDir = VAELAB_TEST_FIXTURE_DIR;

// The fixture files, by what they are.
const std::string kGoodDataSource = "libvaelab-data-source-fixture-images.so";
const std::string kGoodGenerator = "libvaelab-generator-fixture-gen.so";
const std::string kGoodBackend = "libvaelab-backend-fixture-cpu.so";
const std::string kGoodModel = "libvaelab-model-fixture-vae.so";
const std::string kTextFile = "libvaelab-model-garbage.so";
const std::string kNoEntry = "libvaelab-model-no-entry.so";
const std::string kAbiMajorNewer = "libvaelab-model-abi-major-newer.so";
const std::string kAbiMinorNewer = "libvaelab-model-abi-minor-newer.so";
const std::string kForeignFingerprint = "libvaelab-backend-foreign-fingerprint.so";
const std::string kCreateFails = "libvaelab-data-source-fixture-refuses.so";
const std::string kDuplicate = "libvaelab-data-source-zz-duplicate.so";

std::string abi_text(uint32_t major, uint32_t minor) {
  return std::to_string(major) + "." + std::to_string(minor);
}
const std::string kHostAbi = abi_text(VL_ABI_VERSION_MAJOR, VL_ABI_VERSION_MINOR);

/// The one record of `registry` whose file is `file_name`; fails the test unless there is exactly
/// one.
const PluginRecord& record_of(const Registry& registry, const std::string& file_name) {
  const PluginRecord* found = nullptr;
  int count = 0;
  for (const auto& record : registry.records()) {
    if (record.path.filename() == file_name) {
      found = &record;
      ++count;
    }
  }
  INFO("records for " << file_name);
  REQUIRE(count == 1);
  return *found;
}

/// Whether the dynamic linker has mapped `file` (without mapping it).
bool is_loaded(const fs::path& file) {
  void* handle = ::dlopen(file.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (handle == nullptr) return false;
  ::dlclose(handle);  // balances the reference RTLD_NOLOAD took
  return true;
}

/// The PluginError `call` throws, or nothing when it throws none.
template <class Call>
std::optional<PluginError> plugin_error_from(Call&& call) {
  try {
    call();
  } catch (const PluginError& e) {
    return e;
  }
  return std::nullopt;
}

void set_mode(const fs::path& p, mode_t mode) { REQUIRE(::chmod(p.c_str(), mode) == 0); }

/// A fresh folder, mode 0755 whatever the umask, removed with everything in it at the end.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path_ = fs::temp_directory_path() / ("vaelab-test-loader-" + std::to_string(::getpid()) + "-" +
                                         tag + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
    set_mode(path_, 0755);
  }
  ~TempDir() {
    std::error_code ec;
    ::chmod(path_.c_str(), 0755);
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }

  /// Copies a fixture in as `as` (default: its own name), mode 0755.
  fs::path copy_fixture(const std::string& file_name, std::string as = {}) const {
    const fs::path target = path_ / (as.empty() ? file_name : as);
    fs::copy_file(kFixtureDir / file_name, target, fs::copy_options::overwrite_existing);
    set_mode(target, 0755);
    return target;
  }

 private:
  fs::path path_;
};

/// Sets (or unsets, for nullopt) an environment variable for one scope.
class EnvGuard {
 public:
  EnvGuard(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~EnvGuard() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

/// Collects what the host logger writes (plugin lines arrive through the host callback).
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(text_)) {
    sink_->set_pattern("%v");
    vaelab::logger().sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = vaelab::logger().sinks();
    for (auto it = sinks.begin(); it != sinks.end(); ++it) {
      if (*it == sink_) {
        sinks.erase(it);
        break;
      }
    }
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() const { return text_.str(); }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

}  // namespace

// ---- The C envelope's layout --------------------------------------------------------------------

TEST_CASE("the fields every host reads from any plugin never move", "[loader][abi]") {
  STATIC_REQUIRE(offsetof(vl_plugin_set, struct_size) == 0);
  STATIC_REQUIRE(offsetof(vl_plugin_set, abi_major) == sizeof(size_t));
  STATIC_REQUIRE(offsetof(vl_plugin_set, abi_minor) == sizeof(size_t) + sizeof(uint32_t));
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, struct_size) == 0);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, abi_major) == sizeof(size_t));
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, abi_minor) == sizeof(size_t) + sizeof(uint32_t));
  STATIC_REQUIRE(offsetof(vl_status, struct_size) == 0);
  STATIC_REQUIRE(offsetof(vl_host, struct_size) == 0);
  REQUIRE(std::string(VL_PLUGIN_ENTRY_SYMBOL) == "vaelab_plugin_entry");
}

#if defined(__LP64__)
// The C envelope on LP64 (x86_64, aarch64), unchanged since ABI 1.0 (2.0 changed only the C++
// interfaces). A change here is an ABI change: bump VL_ABI_VERSION_MAJOR
// (a field moved) or VL_ABI_VERSION_MINOR (fields appended), then update these numbers.
TEST_CASE("the envelope structs keep their LP64 layout", "[loader][abi]") {
  STATIC_REQUIRE(sizeof(vl_plugin_kind) == 4);
  STATIC_REQUIRE(sizeof(vl_status_code) == 4);
  STATIC_REQUIRE(sizeof(vl_log_level) == 4);

  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, build_fingerprint) == 16);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, kind) == 24);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, name) == 32);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, version) == 40);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, description) == 48);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, defaults_toml) == 56);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, probe) == 64);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, create) == 72);
  STATIC_REQUIRE(offsetof(vl_plugin_descriptor, destroy) == 80);
  STATIC_REQUIRE(sizeof(vl_plugin_descriptor) == 88);

  STATIC_REQUIRE(offsetof(vl_plugin_set, count) == 16);
  STATIC_REQUIRE(offsetof(vl_plugin_set, descriptors) == 24);
  STATIC_REQUIRE(sizeof(vl_plugin_set) == 32);

  STATIC_REQUIRE(offsetof(vl_status, code) == 8);
  STATIC_REQUIRE(offsetof(vl_status, message) == 12);
  STATIC_REQUIRE(VL_STATUS_MESSAGE_CAPACITY == 1024);
  STATIC_REQUIRE(sizeof(vl_status) == 1040);

  STATIC_REQUIRE(offsetof(vl_host, abi_major) == 8);
  STATIC_REQUIRE(offsetof(vl_host, abi_minor) == 12);
  STATIC_REQUIRE(offsetof(vl_host, build_fingerprint) == 16);
  STATIC_REQUIRE(offsetof(vl_host, host_version) == 24);
  STATIC_REQUIRE(offsetof(vl_host, log_level) == 32);
  STATIC_REQUIRE(offsetof(vl_host, log_context) == 40);
  STATIC_REQUIRE(offsetof(vl_host, log) == 48);
  STATIC_REQUIRE(sizeof(vl_host) == 56);
}
#endif

TEST_CASE("the ABI enums keep their values, 0 always invalid", "[loader][abi]") {
  STATIC_REQUIRE(VL_PLUGIN_KIND_INVALID == 0);
  STATIC_REQUIRE(VL_PLUGIN_KIND_BACKEND == 1);
  STATIC_REQUIRE(VL_PLUGIN_KIND_MODEL == 2);
  STATIC_REQUIRE(VL_PLUGIN_KIND_GENERATOR == 3);
  STATIC_REQUIRE(VL_PLUGIN_KIND_DATA_SOURCE == 4);
  STATIC_REQUIRE(VL_STATUS_CODE_INVALID == 0);
  STATIC_REQUIRE(VL_STATUS_CODE_OK == 1);
  STATIC_REQUIRE(VL_STATUS_CODE_BAD_CONFIG == 2);
  STATIC_REQUIRE(VL_STATUS_CODE_UNAVAILABLE == 3);
  STATIC_REQUIRE(VL_STATUS_CODE_INTERNAL == 4);
  STATIC_REQUIRE(VL_LOG_LEVEL_INVALID == 0);
  STATIC_REQUIRE(VL_LOG_LEVEL_TRACE == 1);
  STATIC_REQUIRE(VL_LOG_LEVEL_INFO == 3);
  STATIC_REQUIRE(VL_LOG_LEVEL_OFF == 7);
}

TEST_CASE("the host describes itself to plugins with its own ABI and fingerprint",
          "[loader][abi]") {
  const vl_host* host = vaelab::host_api();
  REQUIRE(host != nullptr);
  CHECK(host->struct_size == sizeof(vl_host));
  CHECK(host->abi_major == VL_ABI_VERSION_MAJOR);
  CHECK(host->abi_minor == VL_ABI_VERSION_MINOR);
  CHECK(std::string(host->build_fingerprint) == VAELAB_BUILD_FINGERPRINT);
  CHECK(host->log != nullptr);
}

// ---- What the fixture folder holds --------------------------------------------------------------

TEST_CASE("every file in the fixture folder gets exactly one verdict, in file-name order",
          "[loader]") {
  const Registry registry({kFixtureDir});
  const std::vector<std::pair<std::string, Refusal>> expected = {
      {kGoodDataSource, Refusal::none},
      {kGoodGenerator, Refusal::none},
      {kGoodBackend, Refusal::none},
      {kGoodModel, Refusal::none},
      {kTextFile, Refusal::not_a_plugin},
      {kNoEntry, Refusal::not_a_plugin},
      {kAbiMajorNewer, Refusal::abi_major_mismatch},
      {kAbiMinorNewer, Refusal::abi_minor_newer},
      {kForeignFingerprint, Refusal::fingerprint_mismatch},
      {kCreateFails, Refusal::none},  // create() is not run by a scan; see check_create()
      {kDuplicate, Refusal::duplicate_name},
  };
  CHECK(registry.search_dirs() == std::vector<fs::path>{kFixtureDir});
  REQUIRE(registry.records().size() == expected.size());
  for (const auto& [file, refusal] : expected) {
    INFO(file);
    const PluginRecord& record = record_of(registry, file);
    CHECK(vaelab::refusal_name(record.refusal) == vaelab::refusal_name(refusal));
    CHECK(record.path == kFixtureDir / file);
    CHECK(record.message.empty() == record.ok());
  }
  for (size_t i = 1; i < registry.records().size(); ++i) {
    CHECK(registry.records()[i - 1].path <= registry.records()[i].path);
  }
}

TEST_CASE("a missing search folder is skipped", "[loader]") {
  const Registry registry({kFixtureDir / "does-not-exist", kFixtureDir});
  CHECK(registry.records().size() == Registry({kFixtureDir}).records().size());
  CHECK(registry.find(VL_PLUGIN_KIND_MODEL, "fixture-vae").path == kFixtureDir / kGoodModel);
}

// ---- Accepted plugins ---------------------------------------------------------------------------

TEST_CASE("a good plugin of every kind is accepted with what its descriptor says", "[loader]") {
  struct Expected {
    std::string file;
    std::string name;
    vl_plugin_kind kind;
    std::string version;
    std::string defaults_toml;
    int32_t preference;
  };
  const std::vector<Expected> good = {
      {kGoodDataSource, "fixture-images", VL_PLUGIN_KIND_DATA_SOURCE, "1.2.3", "first_label = 0\n",
       5},
      {kGoodGenerator, "fixture-gen", VL_PLUGIN_KIND_GENERATOR, "0.4.0", "", 1},
      {kGoodBackend, "fixture-cpu", VL_PLUGIN_KIND_BACKEND, "0.2.0", "threads = 1\n", 7},
      {kGoodModel, "fixture-vae", VL_PLUGIN_KIND_MODEL, "0.3.0", "", 1},
  };
  const Registry registry({kFixtureDir});
  for (const auto& e : good) {
    INFO(e.file);
    const PluginRecord& record = record_of(registry, e.file);
    CHECK(record.ok());
    CHECK(record.refusal == Refusal::none);
    CHECK(record.message.empty());
    CHECK(record.name == e.name);
    CHECK(vaelab::kind_name(record.kind) == vaelab::kind_name(e.kind));
    CHECK(record.version == e.version);
    CHECK(record.abi == kHostAbi);
    CHECK(record.abi == std::to_string(VL_ABI_VERSION_MAJOR) + "." + std::to_string(VL_ABI_VERSION_MINOR));
    CHECK(record.fingerprint == VAELAB_BUILD_FINGERPRINT);
    CHECK_THAT(record.description, Contains("loader fixture"));
    CHECK(record.defaults_toml == e.defaults_toml);
    CHECK(record.preference == e.preference);  // the probe's answer, or 1 without one
    CHECK(record.descriptor != nullptr);
    CHECK(record.library != nullptr);
    CHECK(is_loaded(record.path));
    // find() by kind and name returns this very record.
    CHECK(&registry.find(e.kind, e.name) == &record);
  }
}

TEST_CASE("a created data source works and is freed by its own plugin through the deleter",
          "[loader]") {
  const Registry registry({kFixtureDir});
  const PluginRecord& record = registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "fixture-images");
  const LogCapture log;
  const long uses_before = record.library.use_count();
  {
    auto source = registry.create<vaelab::DataSource>("fixture-images", "first_label = 3\n");
    REQUIRE(source != nullptr);
    CHECK(source.get_deleter().destroy == record.descriptor->destroy);
    CHECK(source.get_deleter().library == record.library);
    CHECK(record.library.use_count() == uses_before + 1);  // the instance keeps its library

    const vaelab::Dataset dataset = source->open();
    CHECK(dataset.name == "fixture-images");
    CHECK(dataset.num_classes == 10);
    CHECK(dataset.train.count == 2);
    CHECK(dataset.train.channels == 1);
    CHECK(dataset.train.height == 2);
    CHECK(dataset.train.width == 2);
    CHECK(dataset.train.pixels == std::vector<uint8_t>{0, 1, 2, 3, 4, 5, 6, 7});
    CHECK(dataset.train.labels == std::vector<int64_t>{3, 4});  // the config reached the plugin
    CHECK(dataset.test.count == 0);
    CHECK_THAT(log.text(), !Contains("[fixture-images] destroyed"));
  }
  // The plugin's own destructor ran (it logs through the host), and the library reference the
  // deleter held is gone with it.
  CHECK_THAT(log.text(), Contains("[fixture-images] destroyed"));
  CHECK(record.library.use_count() == uses_before);
}

TEST_CASE("a created generator answers through its interface, and its errors reach the host",
          "[loader]") {
  const Registry registry({kFixtureDir});
  auto generator = registry.create<vaelab::Generator>("fixture-gen", "");
  REQUIRE(generator != nullptr);
  CHECK(generator->describe() == "fixture generator");
  // vaelab::Error thrown inside the plugin is caught as vaelab::Error here: one type across
  // libraries (its typeinfo lives in the SDK, not in each plugin).
  CHECK_THROWS_MATCHES(generator->sample(1, 0), vaelab::Error, Catch::Message("fixture"));
}

// ---- One refusal per category -------------------------------------------------------------------

TEST_CASE("a text file named like a plugin is not a plugin, and is never loaded", "[loader]") {
  const Registry registry({kFixtureDir});
  const PluginRecord& record = record_of(registry, kTextFile);
  CHECK(record.refusal == Refusal::not_a_plugin);
  CHECK_THAT(record.message, Contains("not a shared library") && Contains("no ELF header"));
  CHECK(record.name.empty());
  CHECK(record.descriptor == nullptr);
  CHECK(record.library == nullptr);
}

TEST_CASE("a shared library without the entry symbol is not a plugin, and is never loaded",
          "[loader]") {
  const Registry registry({kFixtureDir});
  const PluginRecord& record = record_of(registry, kNoEntry);
  CHECK(record.refusal == Refusal::not_a_plugin);
  CHECK_THAT(record.message, Contains("exports no vaelab_plugin_entry symbol"));
  CHECK(record.descriptor == nullptr);
  CHECK(record.library == nullptr);
  // The symbol was looked for in the file, not by running it.
  CHECK_FALSE(is_loaded(record.path));
}

TEST_CASE("a plugin built for another ABI major is refused before its descriptors are read",
          "[loader]") {
  const Registry registry({kFixtureDir});
  const PluginRecord& record = record_of(registry, kAbiMajorNewer);
  const std::string plugin_abi = abi_text(VL_ABI_VERSION_MAJOR + 1, VL_ABI_VERSION_MINOR);
  CHECK(record.refusal == Refusal::abi_major_mismatch);
  CHECK_THAT(record.message, Contains("plugin ABI " + plugin_abi));
  CHECK_THAT(record.message, Contains("host ABI " + kHostAbi));
  CHECK(record.abi == plugin_abi);
  // Another major may lay descriptors out differently: nothing past the set's header is read.
  CHECK(record.name.empty());
  CHECK(record.descriptor == nullptr);
}

TEST_CASE("a plugin with a newer ABI minor is refused, naming both versions", "[loader]") {
  const Registry registry({kFixtureDir});
  const PluginRecord& record = record_of(registry, kAbiMinorNewer);
  const std::string plugin_abi = abi_text(VL_ABI_VERSION_MAJOR, VL_ABI_VERSION_MINOR + 1);
  CHECK(record.refusal == Refusal::abi_minor_newer);
  CHECK_THAT(record.message, Contains("plugin ABI " + plugin_abi));
  CHECK_THAT(record.message, Contains("newer than the host's " + kHostAbi));
  CHECK(record.abi == plugin_abi);
  CHECK(record.descriptor == nullptr);
}

TEST_CASE("a plugin built with another fingerprint is refused, naming both fingerprints",
          "[loader]") {
  const Registry registry({kFixtureDir});
  const PluginRecord& record = record_of(registry, kForeignFingerprint);
  CHECK(record.refusal == Refusal::fingerprint_mismatch);
  CHECK_THAT(record.message, Contains("'" VL_FIXTURE_FOREIGN_FINGERPRINT "'"));
  CHECK_THAT(record.message, Contains("'" VAELAB_BUILD_FINGERPRINT "'"));
  CHECK(record.name == "fixture-foreign");
  CHECK(record.kind == VL_PLUGIN_KIND_BACKEND);
  CHECK(record.fingerprint == VL_FIXTURE_FOREIGN_FINGERPRINT);
  CHECK(record.descriptor == nullptr);  // nothing of it may be called

  // Asking for it by name says why it cannot be had.
  const auto error =
      plugin_error_from([&] { registry.find(VL_PLUGIN_KIND_BACKEND, "fixture-foreign"); });
  REQUIRE(error);
  CHECK(error->refusal() == Refusal::fingerprint_mismatch);
  CHECK_THAT(error->what(), Contains("backend plugin 'fixture-foreign'"));
  CHECK_THAT(error->what(), Contains("was refused: fingerprint_mismatch"));
  CHECK_THAT(error->what(), Contains(VL_FIXTURE_FOREIGN_FINGERPRINT));
}

TEST_CASE("a second plugin of the same kind and name is refused, the first in search order wins",
          "[loader]") {
  const fs::path first = kFixtureDir / kGoodDataSource;

  SECTION("within one folder, files are taken in name order") {
    const Registry registry({kFixtureDir});
    const PluginRecord& record = record_of(registry, kDuplicate);
    CHECK(record.refusal == Refusal::duplicate_name);
    CHECK_THAT(record.message,
               Contains("data-source 'fixture-images' is already provided by " + first.string()));
    CHECK(record.descriptor == nullptr);

    const PluginRecord& kept = registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "fixture-images");
    CHECK(kept.path == first);
    CHECK(kept.version == "1.2.3");
    CHECK(registry.create<vaelab::DataSource>("fixture-images", "")->open().name ==
          "fixture-images");
  }

  SECTION("an earlier folder wins over a later one") {
    const TempDir earlier("shadow");
    const fs::path shadow = earlier.copy_fixture(kDuplicate, "libvaelab-data-source-shadow.so");
    const Registry registry({earlier.path(), kFixtureDir});

    const PluginRecord& kept = registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "fixture-images");
    CHECK(kept.path == shadow);
    CHECK(kept.version == "9.9.9");
    CHECK(registry.create<vaelab::DataSource>("fixture-images", "")->open().name ==
          "duplicate-images");

    const PluginRecord& good = record_of(registry, kGoodDataSource);
    CHECK(good.refusal == Refusal::duplicate_name);
    CHECK_THAT(good.message, Contains("is already provided by " + shadow.string()));
    CHECK(record_of(registry, kDuplicate).refusal == Refusal::duplicate_name);
  }

  SECTION("the same kind is needed: a name may be reused by another kind") {
    const Registry registry({kFixtureDir});
    const auto error =
        plugin_error_from([&] { registry.find(VL_PLUGIN_KIND_GENERATOR, "fixture-images"); });
    REQUIRE(error);
    CHECK(error->refusal() == Refusal::none);
    CHECK_THAT(error->what(), Contains("no generator plugin named 'fixture-images'"));
    CHECK_THAT(error->what(), Contains("available: fixture-gen;"));
  }
}

TEST_CASE("a plugin whose create fails is refused with the plugin's own message", "[loader]") {
  Registry registry({kFixtureDir});
  const PluginRecord& record = record_of(registry, kCreateFails);
  REQUIRE(record.ok());  // nothing wrong with the file itself
  REQUIRE(record.descriptor != nullptr);

  SECTION("the SDK thunk turns the constructor's ConfigError into BAD_CONFIG and its message") {
    vl_status status{};
    status.struct_size = sizeof(vl_status);
    void* instance = reinterpret_cast<void*>(&status);  // must be reset to NULL on failure
    const vl_status_code code =
        record.descriptor->create(vaelab::host_api(), "", &instance, &status);
    CHECK(code == VL_STATUS_CODE_BAD_CONFIG);
    CHECK(status.code == VL_STATUS_CODE_BAD_CONFIG);
    CHECK(std::string(status.message) == "fixture: refuses to start");
    CHECK(instance == nullptr);
  }

  SECTION("Registry::create throws PluginError(create_failed) with the plugin's text") {
    const auto error =
        plugin_error_from([&] { registry.create<vaelab::DataSource>("fixture-refuses", ""); });
    REQUIRE(error);
    CHECK(error->refusal() == Refusal::create_failed);
    CHECK_THAT(error->what(), Contains("data-source plugin 'fixture-refuses' failed to start"));
    CHECK_THAT(error->what(), Contains("fixture: refuses to start"));
  }

  SECTION("check_create() marks it create_failed and leaves the good plugins accepted") {
    registry.check_create();
    const PluginRecord& after = record_of(registry, kCreateFails);
    CHECK(after.refusal == Refusal::create_failed);
    CHECK(after.message == "fixture: refuses to start");
    for (const auto& good : {kGoodDataSource, kGoodGenerator, kGoodBackend, kGoodModel}) {
      INFO(good);
      CHECK(record_of(registry, good).ok());
    }
    const auto error =
        plugin_error_from([&] { registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "fixture-refuses"); });
    REQUIRE(error);
    CHECK(error->refusal() == Refusal::create_failed);
    CHECK_THAT(error->what(), Contains("fixture: refuses to start"));
  }
}

TEST_CASE("a world-writable plugin file is refused without being loaded", "[loader]") {
  const TempDir dir("file");
  const fs::path copy = dir.copy_fixture(kGoodGenerator);
  set_mode(copy, 0757);  // o+w

  const Registry refused({dir.path()});
  const PluginRecord& record = record_of(refused, kGoodGenerator);
  CHECK(record.refusal == Refusal::unsafe_permissions);
  CHECK_THAT(record.message, Contains("file is world-writable"));
  CHECK(record.library == nullptr);
  CHECK_FALSE(is_loaded(copy));

  // The same file without o+w is accepted: the refusal was about the permissions.
  set_mode(copy, 0755);
  const Registry accepted({dir.path()});
  CHECK(record_of(accepted, kGoodGenerator).ok());
}

TEST_CASE("every plugin in a world-writable folder is refused without being loaded", "[loader]") {
  const TempDir dir("folder");
  const fs::path copy = dir.copy_fixture(kGoodBackend);
  set_mode(dir.path(), 0757);  // o+w

  const Registry refused({dir.path()});
  const PluginRecord& record = record_of(refused, kGoodBackend);
  CHECK(record.refusal == Refusal::unsafe_permissions);
  CHECK_THAT(record.message, Contains("folder " + dir.path().string() + " is world-writable"));
  CHECK(record.library == nullptr);
  CHECK_FALSE(is_loaded(copy));

  set_mode(dir.path(), 0755);
  const Registry accepted({dir.path()});
  CHECK(record_of(accepted, kGoodBackend).ok());
}

TEST_CASE("a group-writable plugin file or folder is refused without being loaded", "[loader]") {
  SECTION("the file") {
    const TempDir dir("group-file");
    const fs::path copy = dir.copy_fixture(kGoodGenerator);
    set_mode(copy, 0775);  // g+w

    const Registry refused({dir.path()});
    const PluginRecord& record = record_of(refused, kGoodGenerator);
    CHECK(record.refusal == Refusal::unsafe_permissions);
    CHECK_THAT(record.message, Contains("file is group-writable (mode 0775)"));
    CHECK(record.library == nullptr);
    CHECK(record.descriptor == nullptr);
    CHECK_FALSE(is_loaded(copy));

    set_mode(copy, 0755);
    CHECK(record_of(Registry({dir.path()}), kGoodGenerator).ok());
  }

  SECTION("the folder") {
    const TempDir dir("group-folder");
    const fs::path copy = dir.copy_fixture(kGoodModel);
    set_mode(dir.path(), 0775);

    const Registry refused({dir.path()});
    const PluginRecord& record = record_of(refused, kGoodModel);
    CHECK(record.refusal == Refusal::unsafe_permissions);
    CHECK_THAT(record.message,
               Contains("folder " + dir.path().string() + " is group-writable (mode 0775)"));
    CHECK_FALSE(is_loaded(copy));

    set_mode(dir.path(), 0755);
    CHECK(record_of(Registry({dir.path()}), kGoodModel).ok());
  }

  SECTION("a sticky world-writable folder (like /tmp) is refused too: anyone may add files") {
    const TempDir dir("sticky-folder");
    dir.copy_fixture(kGoodModel);
    set_mode(dir.path(), 01777);
    const Registry registry({dir.path()});
    const PluginRecord& record = record_of(registry, kGoodModel);
    CHECK(record.refusal == Refusal::unsafe_permissions);
    CHECK_THAT(record.message, Contains("is world-writable (mode 1777)"));
  }
}

TEST_CASE("asking for a plugin refused for its permissions says why", "[loader]") {
  const TempDir dir("requested");
  const fs::path copy = dir.copy_fixture(kGoodGenerator);
  set_mode(copy, 0766);  // g+w and o+w

  const Registry registry({dir.path()});
  const PluginRecord& record = record_of(registry, kGoodGenerator);
  // The kind and name come from the file name: the file itself was never opened.
  CHECK(record.kind == VL_PLUGIN_KIND_GENERATOR);
  CHECK(record.name == "fixture-gen");
  CHECK(record.version.empty());
  CHECK(record.descriptor == nullptr);

  const auto error =
      plugin_error_from([&] { registry.find(VL_PLUGIN_KIND_GENERATOR, "fixture-gen"); });
  REQUIRE(error);
  CHECK(error->refusal() == Refusal::unsafe_permissions);
  CHECK_THAT(error->what(), Contains("generator plugin 'fixture-gen' (" + copy.string() + ")"));
  CHECK_THAT(error->what(), Contains("was refused: unsafe_permissions: file is world-writable"));
  // create() goes through find(): nothing is created from the unsafe file.
  const auto create_error =
      plugin_error_from([&] { registry.create<vaelab::Generator>("fixture-gen", ""); });
  REQUIRE(create_error);
  CHECK(create_error->refusal() == Refusal::unsafe_permissions);
  CHECK_FALSE(is_loaded(copy));

  // A data source's kind is two words in the file name.
  const TempDir other("requested-two-words");
  other.copy_fixture(kGoodDataSource);
  set_mode(other.path(), 0777);
  const Registry folder_refused({other.path()});
  const PluginRecord& source = record_of(folder_refused, kGoodDataSource);
  CHECK(source.kind == VL_PLUGIN_KIND_DATA_SOURCE);
  CHECK(source.name == "fixture-images");
  const auto source_error =
      plugin_error_from([&] { folder_refused.find(VL_PLUGIN_KIND_DATA_SOURCE, "fixture-images"); });
  REQUIRE(source_error);
  CHECK(source_error->refusal() == Refusal::unsafe_permissions);
  CHECK_THAT(source_error->what(),
             Contains("folder " + other.path().string() + " is world-writable"));
}

TEST_CASE("a plugin owned by a user who is neither root nor the current user is refused",
          "[loader]") {
  if (::geteuid() != 0) {
    WARN("skipped: giving a file to another user (chown) needs root, and this test runs as uid "
         << ::geteuid());
    return;
  }
  constexpr uid_t kOtherUid = 4242;  // any uid other than root's and ours
  const auto chown_to = [](const fs::path& p, uid_t uid) {
    REQUIRE(::chown(p.c_str(), uid, static_cast<gid_t>(-1)) == 0);
  };

  SECTION("the file") {
    const TempDir dir("owner-file");
    const fs::path copy = dir.copy_fixture(kGoodBackend);
    chown_to(copy, kOtherUid);
    const Registry registry({dir.path()});
    const PluginRecord& record = record_of(registry, kGoodBackend);
    CHECK(record.refusal == Refusal::unsafe_permissions);
    CHECK_THAT(record.message, Contains("file is owned by uid 4242"));
    CHECK_THAT(record.message, Contains("neither root nor the user running vaelab (uid 0"));
    CHECK_FALSE(is_loaded(copy));

    chown_to(copy, 0);  // back to root: accepted
    CHECK(record_of(Registry({dir.path()}), kGoodBackend).ok());
  }

  SECTION("the folder") {
    const TempDir dir("owner-folder");
    dir.copy_fixture(kGoodBackend);
    chown_to(dir.path(), kOtherUid);
    const Registry registry({dir.path()});
    const PluginRecord& record = record_of(registry, kGoodBackend);
    CHECK(record.refusal == Refusal::unsafe_permissions);
    CHECK_THAT(record.message, Contains("folder " + dir.path().string() + " is owned by uid 4242"));
    const auto error =
        plugin_error_from([&] { registry.find(VL_PLUGIN_KIND_BACKEND, "fixture-cpu"); });
    REQUIRE(error);
    CHECK_THAT(error->what(), Contains("was refused: unsafe_permissions: folder"));
    chown_to(dir.path(), 0);
  }
}

TEST_CASE("a symbolic link is judged by the file it points to and that file's folder", "[loader]") {
  const TempDir links("links");
  const TempDir targets("link-targets");
  const fs::path target = targets.copy_fixture(kGoodGenerator);
  const fs::path link = links.path() / kGoodGenerator;
  fs::create_symlink(target, link);

  SECTION("a safe target is accepted, and the record keeps the link's path") {
    const Registry registry({links.path()});
    const PluginRecord& record = record_of(registry, kGoodGenerator);
    CHECK(record.ok());
    CHECK(record.path == link);
  }

  SECTION("a target in a group-writable folder is refused, naming that folder") {
    set_mode(targets.path(), 0775);
    const Registry registry({links.path()});
    const PluginRecord& record = record_of(registry, kGoodGenerator);
    CHECK(record.refusal == Refusal::unsafe_permissions);
    CHECK_THAT(record.message,
               Contains("folder " + targets.path().string() + " (of the link's target " +
                        target.string() + ") is group-writable"));
    CHECK_FALSE(is_loaded(target));
  }

  SECTION("a world-writable target file is refused") {
    set_mode(target, 0757);
    const Registry registry({links.path()});
    const PluginRecord& record = record_of(registry, kGoodGenerator);
    CHECK(record.refusal == Refusal::unsafe_permissions);
    CHECK_THAT(record.message, Contains("file is world-writable"));
  }

  SECTION("a link to nothing is not a plugin") {
    fs::remove(target);
    const Registry registry({links.path()});
    const PluginRecord& record = record_of(registry, kGoodGenerator);
    CHECK(record.refusal == Refusal::not_a_plugin);
    CHECK_THAT(record.message, Contains("cannot be read"));
  }
}

// ---- Finding plugins ----------------------------------------------------------------------------

TEST_CASE("find() for an unknown name lists what is available and suggests a close name",
          "[loader]") {
  const Registry registry({kFixtureDir});

  SECTION("a near miss") {
    const auto error =
        plugin_error_from([&] { registry.find(VL_PLUGIN_KIND_DATA_SOURCE, "fixture-image"); });
    REQUIRE(error);
    CHECK(error->refusal() == Refusal::none);
    CHECK_THAT(error->what(), Contains("no data-source plugin named 'fixture-image'"));
    CHECK_THAT(error->what(), Contains("(did you mean 'fixture-images'?)"));
    // Accepted plugins of that kind only, in search order; the refused duplicate is not offered.
    CHECK_THAT(error->what(), Contains("available: fixture-images, fixture-refuses;"));
    CHECK_THAT(error->what(), Contains("searched: " + kFixtureDir.string()));
  }

  SECTION("nothing close") {
    const auto error =
        plugin_error_from([&] { registry.find(VL_PLUGIN_KIND_MODEL, "transformer-xl"); });
    REQUIRE(error);
    CHECK(error->refusal() == Refusal::none);
    CHECK_THAT(error->what(), !Contains("did you mean"));
    CHECK_THAT(error->what(), Contains("available: fixture-vae;"));
  }

  SECTION("an empty search path") {
    const Registry empty(std::vector<fs::path>{});
    const auto error = plugin_error_from([&] { empty.find(VL_PLUGIN_KIND_MODEL, "fixture-vae"); });
    REQUIRE(error);
    CHECK_THAT(error->what(), Contains("available: none"));
  }
}

TEST_CASE("the search path: config paths, VAELAB_PLUGIN_PATH, next to the executable, install dir",
          "[loader]") {
  const fs::path beside_exe = fs::weakly_canonical(VAELAB_TEST_PLUGIN_DIR);
  const fs::path install_dir = fs::weakly_canonical(VAELAB_PLUGIN_INSTALL_DIR);

  SECTION("without VAELAB_PLUGIN_PATH") {
    const EnvGuard env("VAELAB_PLUGIN_PATH", std::nullopt);
    const auto dirs = Registry::search_path({"/a", "/b"});
    CHECK(dirs == std::vector<fs::path>{"/a", "/b", beside_exe, install_dir});
  }

  SECTION("VAELAB_PLUGIN_PATH entries follow the config's, in order, repeats searched once") {
    const EnvGuard env("VAELAB_PLUGIN_PATH", std::string("/env1::/env2:/a"));
    const auto dirs = Registry::search_path({"/a"});
    REQUIRE(!dirs.empty());
    CHECK(dirs.front() == "/a");
    CHECK(dirs.back() == install_dir);
    CHECK(dirs == std::vector<fs::path>{"/a", "/env1", "/env2", beside_exe, install_dir});
  }
}

namespace {

/// Changes the working directory for one scope.
class CwdGuard {
 public:
  explicit CwdGuard(const fs::path& dir) : old_(fs::current_path()) { fs::current_path(dir); }
  ~CwdGuard() { fs::current_path(old_); }
  CwdGuard(const CwdGuard&) = delete;
  CwdGuard& operator=(const CwdGuard&) = delete;

 private:
  fs::path old_;
};

template <class Call>
std::optional<std::string> error_from(Call&& call) {
  try {
    call();
  } catch (const vaelab::Error& e) {
    return std::string(e.what());
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("plugins are never searched relative to the current directory", "[loader]") {
  const fs::path beside_exe = fs::weakly_canonical(VAELAB_TEST_PLUGIN_DIR);
  const fs::path install_dir = fs::weakly_canonical(VAELAB_PLUGIN_INSTALL_DIR);
  const EnvGuard no_env("VAELAB_PLUGIN_PATH", std::nullopt);
  // A folder holding a good plugin, made the current directory.
  const TempDir cwd("cwd");
  fs::create_directories(cwd.path() / "plugins");
  set_mode(cwd.path() / "plugins", 0755);
  cwd.copy_fixture(kGoodGenerator);
  cwd.copy_fixture(kGoodGenerator, "plugins/" + kGoodGenerator);
  const CwdGuard in_cwd(cwd.path());

  SECTION("the default search path does not hold the current directory") {
    const auto dirs = Registry::search_path({});
    CHECK(dirs == std::vector<fs::path>{beside_exe, install_dir});
    const Registry registry(dirs);
    for (const auto& record : registry.records()) {
      INFO(record.path);
      CHECK(record.path.parent_path() != cwd.path());
    }
    const auto error =
        plugin_error_from([&] { registry.find(VL_PLUGIN_KIND_GENERATOR, "fixture-gen"); });
    REQUIRE(error);
    CHECK_THAT(error->what(), Contains("no generator plugin named 'fixture-gen'"));
  }

  SECTION("a relative [plugins].paths entry is resolved against the config file's folder") {
    const TempDir config_dir("config");
    const auto dirs = Registry::search_path({"plugins", "", "../x/./y"}, config_dir.path());
    REQUIRE(dirs.size() == 4);
    CHECK(dirs[0] == config_dir.path() / "plugins");
    CHECK(dirs[1] == (config_dir.path().parent_path() / "x" / "y"));
    CHECK(dirs[2] == beside_exe);
    // The config folder has no plugins/ folder: the one in the current directory is not used.
    const Registry registry(dirs);
    CHECK_THROWS_AS(registry.find(VL_PLUGIN_KIND_GENERATOR, "fixture-gen"), PluginError);
  }

  SECTION("a relative config folder is made absolute once, from the current directory") {
    const auto dirs = Registry::search_path({"plugins"}, fs::path("."));
    REQUIRE(!dirs.empty());
    CHECK(dirs.front().is_absolute());
    CHECK(dirs.front() == fs::weakly_canonical(cwd.path() / "plugins"));
    CHECK(record_of(Registry(dirs), kGoodGenerator).ok());
  }

  SECTION("a relative [plugins].paths entry without a config folder is refused") {
    const auto error = error_from([] { Registry::search_path({"/abs", "plugins"}); });
    REQUIRE(error);
    CHECK_THAT(*error, Contains("plugins.paths[1]: 'plugins' is a relative folder"));
    CHECK_THAT(*error, Contains("never searched relative to the current directory"));
    CHECK_THROWS_AS(Registry::search_path({"plugins"}), vaelab::ConfigError);
  }

  SECTION("a relative VAELAB_PLUGIN_PATH entry is refused, naming it") {
    const EnvGuard env("VAELAB_PLUGIN_PATH", std::string("/abs:plugins"));
    const auto error = error_from([] { Registry::search_path({}); });
    REQUIRE(error);
    CHECK_THAT(*error, Contains("VAELAB_PLUGIN_PATH: 'plugins' is a relative folder"));
  }

  SECTION("the registry itself refuses a relative folder") {
    const auto error = error_from([] { Registry registry({fs::path("plugins")}); });
    REQUIRE(error);
    CHECK_THAT(*error, Contains("plugin folder 'plugins' is relative"));
    CHECK_THROWS_AS(Registry({fs::path()}), vaelab::Error);
  }
}
