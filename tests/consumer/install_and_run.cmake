# The ctest test install_consumer (cmake -P): installs the build into a fresh prefix, builds
# this folder's project against it with find_package(bitplan) as a user's project would, and
# runs it on a fixture model. Set with -D: BUILD_DIR, SOURCE_DIR, WORK_DIR (emptied first),
# CXX_COMPILER and GENERATOR (the build's, so the consumer is compiled like the library).
foreach(variable BUILD_DIR SOURCE_DIR WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${variable})
    message(FATAL_ERROR "install_and_run.cmake: -D${variable}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix}
                OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
# Only the install prefix may provide bitplan: not the build tree, nor a package registry.
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/build
                        -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release
                        -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${prefix}
                        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
                OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build OUTPUT_QUIET
                COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${WORK_DIR}/build/bitplan_consumer
                        ${SOURCE_DIR}/models/fmnist_resnet.onnx
                        ${SOURCE_DIR}/hw_profiles/cpu-amd-epyc-2t.yaml
                COMMAND_ERROR_IS_FATAL ANY)
