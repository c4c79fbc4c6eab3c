#pragma once
// One document, two renderings: Markdown (images linked) and self-contained HTML (images embedded
// as data URIs), so report.md and report.html always say the same thing.
//
// Inline markup in text: `code` and **bold**; nothing else is interpreted.

#include <filesystem>
#include <string>
#include <vector>

namespace vaelab::report {

class Document {
 public:
  void heading(int level, const std::string& text);
  void paragraph(const std::string& text);
  void bullets(const std::vector<std::string>& items);
  /// `right_aligned[i]`: column i holds numbers. Shorter than `header` means left-aligned.
  void table(const std::vector<std::string>& header,
             const std::vector<std::vector<std::string>>& rows,
             const std::vector<bool>& right_aligned = {});
  /// A PNG: linked as `link` in Markdown, read from `file` and embedded in HTML.
  void image(const std::string& alt, const std::filesystem::path& file, const std::string& link);

  std::string markdown() const;
  std::string html(const std::string& title) const;

 private:
  struct Block {
    enum class Kind { heading, paragraph, bullets, table, image };
    Kind kind = Kind::paragraph;
    int level = 0;
    std::string text;
    std::vector<std::string> items;
    std::vector<std::vector<std::string>> rows;  // tables: header first
    std::vector<bool> right_aligned;
    std::filesystem::path file;
  };
  std::vector<Block> blocks_;
};

/// RFC 4648 base64.
std::string base64(const std::string& bytes);

}  // namespace vaelab::report
