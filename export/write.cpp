// write_export: every check before the first byte is written, then atomic writes.
#include <fmt/format.h>
#include <unistd.h>

#include "core/files.hpp"
#include "export/export.hpp"

namespace bitplan {
namespace fs = std::filesystem;

std::vector<fs::path> export_outputs(ExportFormat format, const fs::path& output) {
  if (format != ExportFormat::trt_precisions) return {output};
  fs::path model = output;
  model.replace_extension(".onnx");
  if (model == output)
    fail_input(
        "exporting trt-precisions to '{}': the precision list and its QDQ model would "
        "share the name; give the list another extension, e.g. '.txt'",
        output.string());
  return {model, output};
}

void write_export(const ExportModel& model, ExportFormat format, const fs::path& output,
                  bool overwrite) {
  const std::string action =
      fmt::format("exporting '{}' as {}", model.model_path.string(), export_format_name(format));
  const std::vector<fs::path> outputs = export_outputs(format, output);
  for (const auto& path : outputs) {
    std::error_code ec;
    if (fs::is_directory(path, ec))
      fail_input("{}: output '{}' is a folder; give a file name", action, path.string());
    check_output_target(path);  // a device such as /dev/full is refused, --force or not
    if (fs::exists(path, ec) && !overwrite)
      fail_input("{}: output '{}' exists; pass --force to replace it", action, path.string());
    const fs::path folder = path.has_parent_path() ? path.parent_path() : fs::path(".");
    if (!fs::is_directory(folder, ec))
      fail_input("{}: the output folder '{}' does not exist", action, folder.string());
    if (::access(folder.c_str(), W_OK) != 0)
      fail_input("{}: the output folder '{}' is not writable", action, folder.string());
  }
  const std::vector<ExportProblem> problems = export_problems(model, format);
  if (!problems.empty()) {
    std::string list;
    for (const auto& p : problems)
      list +=
          fmt::format("\n  layer '{}' {} {}: {}; nearest expressible: {}{}", p.layer, p.tensor,
                      p.spec, p.why, to_string(p.nearest), p.nearest_dynamic ? " (dynamic)" : "");
    fail_unsupported(
        "{}: {} quantized tensor(s) use specs the format cannot express (bitplan never exports a "
        "silently different model):{}\nexport a plan with the nearest specs "
        "(--save-nearest-plan FILE writes it; evaluate it first)",
        action, problems.size(), list);
  }
  // Everything is produced in memory first, so a failure leaves nothing behind.
  std::vector<std::string> contents;
  switch (format) {
    case ExportFormat::onnx_qdq:
      contents.push_back(export_onnx_qdq(model));
      break;
    case ExportFormat::trt_precisions:
      contents.push_back(export_onnx_qdq(model));
      contents.push_back(export_trt_precisions(model));
      break;
    case ExportFormat::ort_overrides:
      contents.push_back(export_ort_overrides(model));
      break;
    case ExportFormat::json:
      contents.push_back(export_json(model));
      break;
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) write_file_atomic(outputs[i], contents[i]);
}

}  // namespace bitplan
