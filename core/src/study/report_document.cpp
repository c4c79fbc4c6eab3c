#include "report_document.hpp"

#include <fstream>
#include <sstream>

#include <vaelab/error.hpp>

namespace fs = std::filesystem;

namespace vaelab::report {
namespace {

/// Markdown text: a lone `*` (as in q*-ELBO) is escaped so it cannot open an emphasis; `**`
/// and code spans are kept.
std::string md_inline(const std::string& text) {
  std::string out;
  bool code = false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '`') code = !code;
    if (!code && text.compare(i, 2, "**") == 0) {
      out += "**";
      ++i;
    } else if (!code && text[i] == '*') {
      out += "\\*";
    } else {
      out += text[i];
    }
  }
  return out;
}

std::string md_cell(const std::string& text) {
  std::string out;
  for (char c : md_inline(text)) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string escape_html(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/// Escapes `text` and turns `code` and **bold** into their tags.
std::string inline_html(const std::string& text) {
  std::string out;
  bool code = false, bold = false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '`') {
      out += code ? "</code>" : "<code>";
      code = !code;
    } else if (!code && text.compare(i, 2, "**") == 0) {
      out += bold ? "</strong>" : "<strong>";
      bold = !bold;
      ++i;
    } else {
      out += escape_html(std::string(1, text[i]));
    }
  }
  if (code) out += "</code>";
  if (bold) out += "</strong>";
  return out;
}

std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file.string() + ": cannot read the image to embed it in the report");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

}  // namespace

std::string base64(const std::string& bytes) {
  static const char* const alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16 |
                       static_cast<unsigned char>(bytes[i + 1]) << 8 |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += alphabet[v >> 6 & 63];
    out += alphabet[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const unsigned v =
        static_cast<unsigned char>(bytes[i]) << 16 | static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += alphabet[v >> 18 & 63];
    out += alphabet[v >> 12 & 63];
    out += alphabet[v >> 6 & 63];
    out += '=';
  }
  return out;
}

void Document::heading(int level, const std::string& text) {
  Block b;
  b.kind = Block::Kind::heading;
  b.level = level;
  b.text = text;
  blocks_.push_back(std::move(b));
}

void Document::paragraph(const std::string& text) {
  Block b;
  b.kind = Block::Kind::paragraph;
  b.text = text;
  blocks_.push_back(std::move(b));
}

void Document::bullets(const std::vector<std::string>& items) {
  if (items.empty()) return;
  Block b;
  b.kind = Block::Kind::bullets;
  b.items = items;
  blocks_.push_back(std::move(b));
}

void Document::table(const std::vector<std::string>& header,
                     const std::vector<std::vector<std::string>>& rows,
                     const std::vector<bool>& right_aligned) {
  Block b;
  b.kind = Block::Kind::table;
  b.rows.push_back(header);
  for (const auto& row : rows) {
    std::vector<std::string> r = row;
    r.resize(header.size());
    b.rows.push_back(std::move(r));
  }
  b.right_aligned = right_aligned;
  b.right_aligned.resize(header.size(), false);
  blocks_.push_back(std::move(b));
}

void Document::image(const std::string& alt, const fs::path& file, const std::string& link) {
  Block b;
  b.kind = Block::Kind::image;
  b.text = alt;
  b.file = file;
  b.items = {link};
  blocks_.push_back(std::move(b));
}

std::string Document::markdown() const {
  std::ostringstream md;
  for (const Block& b : blocks_) {
    switch (b.kind) {
      case Block::Kind::heading:
        md << std::string(static_cast<size_t>(b.level), '#') << ' ' << md_inline(b.text) << "\n\n";
        break;
      case Block::Kind::paragraph:
        md << md_inline(b.text) << "\n\n";
        break;
      case Block::Kind::bullets:
        for (const auto& item : b.items) md << "- " << md_inline(item) << "\n";
        md << "\n";
        break;
      case Block::Kind::table:
        for (size_t r = 0; r < b.rows.size(); ++r) {
          md << "|";
          for (const auto& cell : b.rows[r]) md << ' ' << md_cell(cell) << " |";
          md << "\n";
          if (r == 0) {
            md << "|";
            for (bool right : b.right_aligned) md << (right ? "---:|" : "---|");
            md << "\n";
          }
        }
        md << "\n";
        break;
      case Block::Kind::image: {
        const std::string& link = b.items.front();
        const bool plain = link.find_first_of(" ()<>") == std::string::npos;
        md << "![" << md_cell(b.text) << "](" << (plain ? link : "<" + link + ">") << ")\n\n";
        break;
      }
    }
  }
  return md.str();
}

std::string Document::html(const std::string& title) const {
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>"
    << escape_html(title)
    << "</title>\n<style>\n"
       "body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; "
       "line-height: 1.45; }\n"
       "table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }\n"
       "th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; }\n"
       "th { background: #eee; }\n"
       "td.num { text-align: right; font-variant-numeric: tabular-nums; }\n"
       "code { background: #f3f3f3; padding: 0 0.2em; }\n"
       "figure { margin: 1em 0; } img { max-width: 100%; }\n"
       "</style>\n</head>\n<body>\n";
  for (const Block& b : blocks_) {
    switch (b.kind) {
      case Block::Kind::heading:
        h << "<h" << b.level << ">" << inline_html(b.text) << "</h" << b.level << ">\n";
        break;
      case Block::Kind::paragraph:
        h << "<p>" << inline_html(b.text) << "</p>\n";
        break;
      case Block::Kind::bullets:
        h << "<ul>\n";
        for (const auto& item : b.items) h << "<li>" << inline_html(item) << "</li>\n";
        h << "</ul>\n";
        break;
      case Block::Kind::table:
        h << "<table>\n";
        for (size_t r = 0; r < b.rows.size(); ++r) {
          h << "<tr>";
          for (size_t c = 0; c < b.rows[r].size(); ++c) {
            if (r == 0) {
              h << "<th>" << inline_html(b.rows[r][c]) << "</th>";
            } else {
              h << (b.right_aligned[c] ? "<td class=\"num\">" : "<td>") << inline_html(b.rows[r][c])
                << "</td>";
            }
          }
          h << "</tr>\n";
        }
        h << "</table>\n";
        break;
      case Block::Kind::image:
        h << "<figure><img alt=\"" << escape_html(b.text) << "\" src=\"data:image/png;base64,"
          << base64(read_bytes(b.file)) << "\"><figcaption>" << inline_html(b.text)
          << "</figcaption></figure>\n";
        break;
    }
  }
  h << "</body>\n</html>\n";
  return h.str();
}

}  // namespace vaelab::report
