#include "runtime/activity.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace moe {
namespace {

char g_prefix[256] = "";
char g_activity[2][512] = {"starting", "starting"};
std::atomic<int> g_current{0};

void write_all(const char* text) {
  size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= size_t(n);
  }
}

void on_terminate(int) {
  write_all("moe: error: ");
  write_all(g_prefix);
  write_all(" terminated by the launcher while ");
  write_all(g_activity[g_current.load()]);
  write_all("\n");
  _exit(1);
}

}  // namespace

void set_activity(const std::string& text) {
  // Double buffer: the handler always reads a complete string.
  const int next = 1 - g_current.load();
  std::strncpy(g_activity[next], text.c_str(), sizeof(g_activity[next]) - 1);
  g_current.store(next);
}

void report_activity_on_termination(const std::string& prefix) {
  std::strncpy(g_prefix, prefix.c_str(), sizeof(g_prefix) - 1);
  struct sigaction action {};
  action.sa_handler = on_terminate;
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace moe
