// The recording signal handler; why it does nothing else is in signals.hpp.
#include "app/signals.hpp"

#include <atomic>

#include "lib/core/error.hpp"

namespace sdgen::app {

namespace {

// Only a lock-free atomic may be touched from a handler that interrupts arbitrary code.
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

void record_signal(int signal) {
  int none = 0;
  g_signal.compare_exchange_strong(none, signal);  // the first signal decides the exit code
}

struct sigaction recording_action() {
  struct sigaction action {};
  action.sa_handler = record_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  return action;
}

}  // namespace

InterruptHandler::InterruptHandler() {
  const auto action = recording_action();
  // A signal the parent set to be ignored (nohup, a background job of a script) stays ignored:
  // whoever started sdgen asked that it not stop on it.
  const auto install = [&](int signal, struct sigaction& previous) {
    sigaction(signal, &action, &previous);
    if (previous.sa_handler == SIG_IGN) sigaction(signal, &previous, nullptr);
  };
  install(SIGINT, previous_interrupt_);
  install(SIGTERM, previous_terminate_);
}

InterruptHandler::~InterruptHandler() {
  sigaction(SIGINT, &previous_interrupt_, nullptr);
  sigaction(SIGTERM, &previous_terminate_, nullptr);
}

bool interrupted() { return g_signal.load(std::memory_order_relaxed) != 0; }

void throw_if_interrupted() {
  if (interrupted()) throw Cancelled("interrupted");
}

int interrupted_exit_code() {
  const int signal = g_signal.load();
  return 128 + (signal != 0 ? signal : SIGINT);
}

}  // namespace sdgen::app
