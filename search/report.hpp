// report.html of a results folder (search/output.hpp): one self-contained page, inline SVG
// and CSS, no scripts: accuracy against predicted latency and against size (explored plans,
// the front, the uniform baselines), the front and baseline tables, the per-layer choices of
// the front plans and the sensitivity heat map.
#pragma once

#include <string>

#include "search/driver.hpp"
#include "search/output.hpp"

namespace bitplan::search {

std::string report_html(const SearchResult& result, const OutputInfo& info);

}  // namespace bitplan::search
