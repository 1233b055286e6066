// sdgen's entry point: parse the command line, run the chosen command, and turn every error into
// one line on stderr and a non-zero exit (2: the command line is wrong; 1: anything else; 128 +
// the signal when Ctrl-C or SIGTERM stopped a run, see app/signals.hpp). This is the only place
// exceptions are caught.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "app/commands.hpp"
#include "app/signals.hpp"
#include "lib/core/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"sdgen: Stable Diffusion text-to-image on CPU and CUDA"};
  app.set_version_flag("--version", "sdgen 0.1.0");
  app.require_subcommand(0, 1);
  sdgen::app::add_generate_command(app);
  sdgen::app::add_devices_command(app);
  sdgen::app::add_inspect_command(app);
  sdgen::app::add_make_model_command(app);
  sdgen::app::add_tokenize_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "sdgen: error: %s\n", e.what());
    return 2;
  } catch (const sdgen::Cancelled&) {
    std::fputs("sdgen: interrupted\n", stderr);
    return sdgen::app::interrupted_exit_code();
  } catch (const sdgen::UsageError& e) {
    std::fprintf(stderr, "sdgen: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sdgen: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
