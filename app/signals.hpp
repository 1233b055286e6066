// Ctrl-C and SIGTERM during `sdgen generate`: stop at the next safe point instead of dying mid-write.
//
// Dying at once would be safe for the images already written (each PNG appears by an atomic
// rename), but a signal that lands inside the PNG writer would leave its temporary file behind,
// and the run could not say which prompts it finished. So while an InterruptHandler is alive, the
// handler only records the signal in a lock-free atomic, the one thing a handler may safely do.
// The generation loop polls interrupted(): the pipeline checks it before every UNet call and VAE
// decode (through its CancelFn, so lib/ holds no signal code) and the loop before every prompt;
// the first check that sees it throws sdgen::Cancelled, the half-computed image is dropped, and
// app/main.cpp exits with 128 + the signal (130 for SIGINT, 143 for SIGTERM), as a shell reports a
// program killed by it. A PNG being written when the signal arrives is finished first (it takes
// milliseconds), so a file is either complete under its name or absent.
//
// A second Ctrl-C changes nothing: it lands in the same flag. It does not force an immediate exit,
// because that exit could be inside the PNG writer and leave a temporary file; the wait it asks for
// is at most one UNet call or VAE decode. Whoever cannot wait has SIGKILL (or Ctrl-\, SIGQUIT),
// which no program can clean up after: at worst a hidden ".NAME.png.tmp-XXXXXX" stays beside the
// images, never a truncated NAME.png.
#pragma once

#include <csignal>

namespace sdgen::app {

// Records SIGINT and SIGTERM while alive (with SA_RESTART, so no system call in progress fails
// with EINTR); the previous dispositions return when it is destroyed. One at a time. A signal
// that was ignored when sdgen started stays ignored.
class InterruptHandler {
 public:
  InterruptHandler();
  ~InterruptHandler();
  InterruptHandler(const InterruptHandler&) = delete;
  InterruptHandler& operator=(const InterruptHandler&) = delete;

 private:
  struct sigaction previous_interrupt_ {};
  struct sigaction previous_terminate_ {};
};

// Whether SIGINT or SIGTERM arrived while a handler was installed. Cheap: meant to be polled.
bool interrupted();

// Throws sdgen::Cancelled when interrupted().
void throw_if_interrupted();

// The exit status for a run stopped by a signal: 128 + the first signal recorded (130 for SIGINT,
// 143 for SIGTERM); 130 when none was (a cancellation that came from elsewhere).
int interrupted_exit_code();

}  // namespace sdgen::app
