// What this rank is doing right now, kept where a signal handler can read it: when the launcher
// terminates the run (because another rank died), the last words name what we were waiting for.
#pragma once

#include <string>

namespace moe {

void set_activity(const std::string& text);
// On SIGTERM print "moe: error: <prefix> terminated by the launcher while <activity>" and exit 1.
void report_activity_on_termination(const std::string& prefix);

}  // namespace moe
