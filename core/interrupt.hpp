// Ctrl-C (SIGINT) and SIGTERM, taken by one thread.
//
// The signals are blocked in every other thread - install before any thread starts, and the
// OpenMP and TBB workers inherit the mask - so no computation is ever interrupted inside a
// system call or a library's wait loop; a dedicated thread waits for them instead. By default
// an interrupt ends the program with exit code 130 (outputs are written atomically, so
// nothing half-written stays behind). A command that can stop cleanly (search) registers a
// flag: the first interrupt sets it, a second one exits.
#pragma once

#include <atomic>

namespace bitplan {

void install_interrupt_handling();
void set_interrupt_flag(std::atomic<bool>* flag);  // nullptr: back to exiting at once

}  // namespace bitplan
