# The public headers stay cheap to include: `#include "tapegrad.hpp"` compiles, and neither it nor
# any installed header pulls in nlohmann/json.hpp (declarations need only json_fwd.hpp; callers of
# to_json()/state_dict() include the full header themselves) or other heavy headers no
# declaration needs (<regex>, <iostream>, Eigen: only autodiff/eigen.hpp, the Eigen bridge for
# Tensor::array<T>(), includes <Eigen/Core>), and none includes the internals that are not installed
# (autodiff/detail/, ops/kernels/). Checks what is included, not a timing.
# Usage: cmake -DCXX=.. -DSOURCE_DIR=.. "-DFLAGS=-I..|-D.." -P check_headers.cmake
# (FLAGS separated by |: add_test would split a ;-list into separate arguments)
set(forbidden "/nlohmann/json\\.hpp$" "/regex$" "/iostream$" "/Eigen/Dense$" "/Eigen/Core$"
              "/autodiff/detail/" "/ops/kernels/")
string(REPLACE "|" ";" FLAGS "${FLAGS}")

# The one-liner compiles with these headers alone.
execute_process(COMMAND ${CXX} -std=c++20 ${FLAGS} -I${SOURCE_DIR} -fsyntax-only
                        ${SOURCE_DIR}/tests/consumer/one_include.cpp
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc)
  message(FATAL_ERROR "tests/consumer/one_include.cpp does not compile:\n${err}")
endif()

# The umbrella header and every installed header (CMakeLists.txt installs autodiff/, ops/, nn/ *.hpp).
file(GLOB headers RELATIVE ${SOURCE_DIR} ${SOURCE_DIR}/autodiff/*.hpp ${SOURCE_DIR}/ops/*.hpp ${SOURCE_DIR}/nn/*.hpp)
set(failures "")
foreach(header tapegrad.hpp ${headers})
  # -M: the dependency list (every file the preprocessor opens, system headers included).
  execute_process(COMMAND ${CXX} -std=c++20 ${FLAGS} -I${SOURCE_DIR} -x c++ -M ${SOURCE_DIR}/${header}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE deps ERROR_VARIABLE err)
  if(rc)
    string(APPEND failures "\n  ${header}: preprocessing failed: ${err}")
    continue()
  endif()
  string(REGEX REPLACE "[ \t\r\n\\\\]+" ";" deps "${deps}")
  foreach(dep ${deps})
    foreach(pattern ${forbidden})
      if(header STREQUAL "autodiff/eigen.hpp" AND pattern STREQUAL "/Eigen/Core$")
        continue()
      endif()
      if(dep MATCHES "${pattern}")
        string(APPEND failures "\n  ${header} includes ${dep}")
      endif()
    endforeach()
  endforeach()
endforeach()
if(failures)
  message(FATAL_ERROR "Public headers include what they should not (include it in the .cpp that "
                      "needs it; for nlohmann::json use <nlohmann/json_fwd.hpp> in headers):${failures}")
endif()
list(LENGTH headers n)
math(EXPR n "${n} + 1")
message(STATUS "headers: ${n} public headers checked, one_include.cpp compiles")
