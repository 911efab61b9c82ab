#include "core/interrupt.hpp"

#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <thread>

namespace bitplan {
namespace {
std::atomic<std::atomic<bool>*> g_flag{nullptr};
}  // namespace

void install_interrupt_handling() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    for (;;) {
      int signal = 0;
      if (sigwait(&set, &signal) != 0) continue;
      std::atomic<bool>* flag = g_flag.load();
      if (flag && !flag->exchange(true)) continue;  // the command stops at its next check
      std::_Exit(130);
    }
  }).detach();
}

void set_interrupt_flag(std::atomic<bool>* flag) {
  g_flag.store(flag);
}

}  // namespace bitplan
