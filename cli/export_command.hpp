// bitplan export: a plan written for deployment (export/export.hpp, docs/export.md).
#pragma once

#include <string>
#include <vector>

namespace bitplan {

int cmd_export(const std::vector<std::string>& args);

}  // namespace bitplan
