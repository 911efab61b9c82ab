# The CUDA profiler's profile file (profile_file.cpp): host code that needs only
# nlohmann/json.hpp, the nlohmann_json package when found, otherwise the folder named by
# BITPLAN_EXTRA_INCLUDE. Included by backends/CMakeLists.txt whether or not the CUDA toolkit is
# found, so the unit tests check the file format on any machine, and by profiler.cmake.
include_guard(GLOBAL)
get_filename_component(BITPLAN_CUDA_REPO_ROOT ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)

add_library(bitplan_cuda_profile_file STATIC ${CMAKE_CURRENT_LIST_DIR}/profile_file.cpp)
target_include_directories(bitplan_cuda_profile_file PUBLIC ${BITPLAN_CUDA_REPO_ROOT})
target_compile_options(bitplan_cuda_profile_file PRIVATE -Wall -Wextra -Wpedantic)
if(TARGET nlohmann_json::nlohmann_json)
  target_link_libraries(bitplan_cuda_profile_file PUBLIC nlohmann_json::nlohmann_json)
else()
  find_path(BITPLAN_NLOHMANN_INCLUDE nlohmann/json.hpp HINTS ${BITPLAN_EXTRA_INCLUDE})
  if(NOT BITPLAN_NLOHMANN_INCLUDE)
    message(FATAL_ERROR "bitplan: the CUDA profiler needs nlohmann/json.hpp: install "
                        "nlohmann-json3-dev or copy the header into -DBITPLAN_EXTRA_INCLUDE=DIR "
                        "(docs/cuda_backend.md)")
  endif()
  target_include_directories(bitplan_cuda_profile_file SYSTEM PUBLIC ${BITPLAN_NLOHMANN_INCLUDE})
endif()
