// report.html (search/report.hpp), read as text: the scatters put every plan on the same
// numbers (subset top-1, final top-1 as separate open markers), baseline labels do not
// overlap, titles and names fit their SVG, and the heat map has a colour scale (issue 11.3).
// Text extents here are averages measured in headless Chromium with DejaVu Sans, the widest
// common default sans-serif, independent of the report's own estimate.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include "search/report.hpp"

namespace search_report_test {

using namespace bitplan;
using namespace bitplan::search;

namespace {

const OutputInfo kInfo{"model.onnx", "0123456789abcdef", "run.yaml", "bitplan search"};

// The <svg> elements of a page, in order.
std::vector<std::string> svgs_of(const std::string& html) {
  std::vector<std::string> svgs;
  for (std::size_t at = html.find("<svg"); at != std::string::npos; at = html.find("<svg", at)) {
    const std::size_t end = html.find("</svg>", at) + 6;
    svgs.push_back(html.substr(at, end - at));
    at = end;
  }
  return svgs;
}

struct Element {
  std::string tag;  // the opening tag with its attributes
  std::string text;
};

// Elements <name class="css" ...>text</name> (or self-closing) of `svg`.
std::vector<Element> elements(const std::string& svg, const std::string& name,
                              const std::string& css) {
  const std::regex pattern("<" + name + "[^>]* class=\"" + css + "\"[^>]*?(/>|>([^<]*))");
  std::vector<Element> found;
  for (std::sregex_iterator it(svg.begin(), svg.end(), pattern), end; it != end; ++it)
    found.push_back({(*it)[0].str(), (*it)[2].str()});
  return found;
}

double attribute(const std::string& tag, const std::string& name) {
  std::smatch match;
  REQUIRE(std::regex_search(tag, match, std::regex(" " + name + "=\"([-0-9.]+)\"")));
  return std::stod(match[1].str());
}

// Characters x em, the average advance measured in Chromium with DejaVu Sans, the widest
// common default sans-serif: 0.74 em over baseline names (W4A8: 32.4 px at 11 px), under 0.6
// em bold over the report's titles.
double estimated_width(const std::string& text, double font_px, double em_per_character) {
  return static_cast<double>(text.size()) * font_px * em_per_character;
}

PlanMetrics metrics(double top1, std::int64_t samples, double latency_ms, double size_bytes) {
  PlanMetrics m;
  m.top1 = top1;
  m.samples = samples;
  m.latency_ms = latency_ms;
  m.size_bytes = size_bytes;
  return m;
}

// A search over two layers: an explored plan, two front plans re-evaluated on 5,000 samples
// (one of them at the explored plan's subset top-1), and seven uniform baselines crowded
// into one corner of both plots.
SearchResult crowded_result() {
  SearchResult r;
  r.space.layers = {{"/conv/Conv", {"fp32", "W8A8"}}, {"/fc/Gemm", {"fp32", "W8A8"}}};
  r.unsupported = {{"", ""}, {"", ""}};
  r.sensitivity = {{0, 0.001}, {0, 10}};
  r.sensitivity_drop = {{0, 0.001}, {0, 0.002}};
  r.latency_ms = {{0.5, 0.25}, {0.25, 0.125}};
  r.fp32 = metrics(0.9, 5000, 0.75, 4000);
  r.target = "cpu";
  r.objective_names = {"accuracy", "latency", "size"};
  r.policy = "nsga2";
  constexpr double kSubsetTop1[] = {0.88, 0.88, 0.86};
  for (int k = 0; k < 3; ++k) {
    EvaluatedPlan e;
    e.genome = {k % 2, 1};
    e.metrics = metrics(kSubsetTop1[k], 1000, 0.3 + 0.1 * k, 2000 + 500.0 * k);
    r.evaluations.push_back(e);
  }
  for (const std::size_t on_front : {1, 2}) {
    PlanMetrics fin = r.evaluations[on_front].metrics;
    fin.top1 += 0.01;
    fin.samples = 5000;
    r.evaluations[on_front].final_metrics = fin;
    r.front.push_back(on_front);
  }
  for (int b = 0; b < 7; ++b) {
    Baseline baseline;
    baseline.name = "W" + std::to_string(b + 2) + "A8";
    baseline.metrics = metrics(0.85 + 0.0005 * b, 1000, 0.7, 3900 - 10.0 * b);
    r.baselines.push_back(baseline);
  }
  return r;
}

}  // namespace

TEST_CASE("11.3 the scatters draw every plan at its subset top-1, final top-1 apart") {
  const auto svgs = svgs_of(report_html(crowded_result(), kInfo));
  REQUIRE(svgs.size() == 3);  // latency, size, sensitivity
  for (const std::size_t chart : {0, 1}) {
    CAPTURE(chart);
    const auto explored = elements(svgs[chart], "circle", "explored");
    const auto front = elements(svgs[chart], "circle", "front");
    REQUIRE(explored.size() == 1);
    REQUIRE(front.size() == 2);
    // The explored plan and the first front plan share a subset top-1, so a height.
    CHECK(attribute(explored[0].tag, "cy") == attribute(front[0].tag, "cy"));
    // Each re-evaluated plan: an open marker, higher (final top-1 +1 pt), joined by a line.
    const auto finals = elements(svgs[chart], "circle", "final");
    REQUIRE(finals.size() == 2);
    CHECK(attribute(finals[0].tag, "cy") < attribute(front[0].tag, "cy"));
    CHECK(elements(svgs[chart], "line", "re-evaluation").size() == 2);
    CHECK(svgs[chart].find("top-1 on the search subset (1,000 samples)") != std::string::npos);
    CHECK(svgs[chart].find("(5,000 samples)") != std::string::npos);
    CHECK(elements(svgs[chart], "rect", "baseline").size() == 7);
  }
}

TEST_CASE("11.3 baseline labels crowded into one corner neither overlap nor leave the plot") {
  const auto svgs = svgs_of(report_html(crowded_result(), kInfo));
  for (const std::size_t chart : {0, 1}) {
    CAPTURE(chart);
    const auto labels = elements(svgs[chart], "text", "baseline-label");
    REQUIRE(labels.size() == 7);
    const auto frame = elements(svgs[chart], "rect", "plot-frame");
    REQUIRE(frame.size() == 1);
    const double left = attribute(frame[0].tag, "x"), top = attribute(frame[0].tag, "y");
    const double right = left + attribute(frame[0].tag, "width"),
                 bottom = top + attribute(frame[0].tag, "height");
    struct Box {
      double x0, y0, x1, y1;
    };
    std::vector<Box> boxes;
    for (const auto& label : labels) {
      const double x = attribute(label.tag, "x"), y = attribute(label.tag, "y");
      // The line box of 11 px DejaVu Sans: ascent 10.2 px, descent 2.6 px.
      boxes.push_back({x, y - 10.2, x + estimated_width(label.text, 11, 0.74), y + 2.6});
      CHECK(boxes.back().x0 >= left);
      CHECK(boxes.back().x1 <= right);
      CHECK(boxes.back().y0 >= top);
      CHECK(boxes.back().y1 <= bottom);
    }
    for (std::size_t a = 0; a < boxes.size(); ++a)
      for (std::size_t b = a + 1; b < boxes.size(); ++b) {
        CAPTURE(labels[a].text);
        CAPTURE(labels[b].text);
        const bool overlap = boxes[a].x0 < boxes[b].x1 && boxes[b].x0 < boxes[a].x1 &&
                             boxes[a].y0 < boxes[b].y1 && boxes[b].y0 < boxes[a].y1;
        CHECK_FALSE(overlap);
      }
  }
}

TEST_CASE("11.3 titles and layer names fit their SVG however long") {
  SearchResult r = crowded_result();
  const std::string long_layer = "/encoder/layers.11/self_attention/out_projection/MatMul_quant";
  const double long_layer_width = 314;  // at 10 px in DejaVu Sans, measured in Chromium
  r.space.layers[0].layer = long_layer;
  const auto svgs = svgs_of(report_html(r, kInfo));
  for (const auto& svg : svgs) {
    const double width = attribute(svg.substr(0, svg.find('>')), "width");
    const auto titles = elements(svg, "text", "chart-title");
    REQUIRE_FALSE(titles.empty());
    for (const auto& line : titles) {
      const double font_px = attribute(line.tag, "font-size");
      CAPTURE(line.text);
      CHECK(attribute(line.tag, "x") + estimated_width(line.text, font_px, 0.6) <= width);
    }
  }
  // The heat map's labels end (text-anchor="end") left of the grid: its margin grows.
  std::smatch label;
  REQUIRE(std::regex_search(
      svgs[2], label,
      std::regex(R"~(<text x="([0-9.]+)"[^>]*text-anchor="end">)~" +
                 std::regex_replace(long_layer, std::regex("\\."), "\\.") + "<")));
  CHECK(std::stod(label[1].str()) - long_layer_width >= 0);
}

TEST_CASE("11.3 the heat map has a colour scale from the least to the most sensitive pair") {
  const auto svgs = svgs_of(report_html(crowded_result(), kInfo));
  const std::string& heatmap = svgs[2];
  const std::size_t scale = heatmap.find("<g class=\"colour-scale\">");
  REQUIRE(scale != std::string::npos);
  CHECK(heatmap.find("<linearGradient id=\"kl-scale\">") != std::string::npos);
  std::vector<std::string> ticks;
  for (const auto& tick : elements(heatmap, "text", "scale-tick")) ticks.push_back(tick.text);
  // KL from 0.001 to 10: the ends, and the powers of ten between that do not crowd them.
  REQUIRE(ticks.size() >= 3);
  CHECK(ticks[0] == "0.001");
  CHECK(ticks[1] == "10");
  CHECK(std::find(ticks.begin(), ticks.end(), "1e-1") != ticks.end());
  CHECK(heatmap.find("not offered", scale) != std::string::npos);
  CHECK(heatmap.find("unsupported on the target", scale) != std::string::npos);

  SearchResult all_zero = crowded_result();
  all_zero.sensitivity = {{0, 0}, {0, 0}};
  const auto zero_svgs = svgs_of(report_html(all_zero, kInfo));
  CHECK(zero_svgs[2].find("0 everywhere") != std::string::npos);
  CHECK(zero_svgs[2].find("linearGradient") == std::string::npos);
}

TEST_CASE("the heat map of a search stopped during sensitivity marks the unmeasured layers") {
  // Ctrl-C during the sensitivity stage: the first layer was measured, the second not
  // (run_sensitivity leaves its rows empty).
  SearchResult stopped = crowded_result();
  stopped.sensitivity = {{0, 0.001}, {}};
  stopped.sensitivity_drop = {{0, 0.001}, {}};
  stopped.interrupted = true;
  const auto svgs = svgs_of(report_html(stopped, kInfo));
  REQUIRE(svgs.size() == 3);
  CHECK(svgs[2].find("not measured (the search stopped first)") != std::string::npos);
  CHECK(svgs[2].find("KL 0.001") != std::string::npos);
}

}  // namespace search_report_test
