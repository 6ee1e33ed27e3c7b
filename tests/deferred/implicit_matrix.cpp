// Deferred free over every way into an implicit region: for each reader's last allocator call
// x who allocated the block x process state x thread count, a block born before the reader's
// last call and freed after it stays intact while the reader reads it and the freer and other
// threads churn its size class. With no arguments every case runs, each in a fresh process
// (the process state is part of the case); `CALL OWNER STATE THREADS` runs one case.
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <new>
#include <thread>
#include <vector>

#include "wfmm/wfmm.h"

extern char** environ;

namespace {

const char* const kCalls[] = {"malloc",         "calloc", "realloc-grow", "realloc-shrink",
                              "realloc-inplace", "free",   "new",          "delete",
                              "aligned_alloc",   "posix_memalign", "memalign"};
const char* const kOwners[] = {"reader", "freer", "third", "exited"};
const char* const kStates[] = {"fresh", "recycled", "fork-child", "min-bytes"};
const int kThreads[] = {2, 4, 16};
constexpr int kNumCalls = sizeof kCalls / sizeof kCalls[0];
constexpr int kNumOwners = 4, kNumStates = 4, kNumThreadCounts = 3;

constexpr size_t kSize = 64;  // the block read and the size class churned
constexpr unsigned char kPattern = 0xa7;

void* volatile g_sink;  // keeps the compiler from pairing or dropping allocator calls

int index_of(const char* const* names, int n, const char* s) {
  for (int i = 0; i < n; ++i)
    if (strcmp(names[i], s) == 0) return i;
  return -1;
}

void fill(void* p) { memset(p, kPattern, kSize); }

bool intact(const void* p) {
  const volatile unsigned char* c = static_cast<const volatile unsigned char*>(p);
  for (size_t i = 0; i < kSize; ++i)
    if (c[i] != kPattern) return false;
  return true;
}

// Everything the reader needs for its last call, made before it (those are earlier calls).
struct Prepared {
  void* y = nullptr;   // from the malloc family
  void* yn = nullptr;  // from operator new
};

void prepare(int call, Prepared* pr) {
  switch (call) {
    case 2: pr->y = malloc(40); break;        // realloc-grow
    case 3: pr->y = malloc(4000); break;      // realloc-shrink
    case 4: pr->y = malloc(100); break;       // realloc-inplace
    case 5: pr->y = malloc(48); break;        // free
    case 7: pr->yn = ::operator new(48); break;  // delete
    default: break;
  }
  g_sink = pr->y;
  g_sink = pr->yn;
}

// The reader's last allocator call before it reads the block.
void last_call(int call, Prepared* pr) {
  void* r = nullptr;
  switch (call) {
    case 0: r = malloc(48); break;
    case 1: r = calloc(1, 48); break;
    case 2: case 3: case 4: {
      size_t n = call == 2 ? 4000 : call == 3 ? 100 : 90;
      r = realloc(pr->y, n);
      pr->y = nullptr;
      break;
    }
    case 5: free(pr->y); pr->y = nullptr; break;
    case 6: pr->yn = ::operator new(48); break;
    case 7: ::operator delete(pr->yn); pr->yn = nullptr; break;
    case 8: r = aligned_alloc(64, 128); break;
    case 9: if (posix_memalign(&r, 64, 128) != 0) r = nullptr; break;
    case 10: r = memalign(64, 128); break;
  }
  g_sink = r;
  if (r != nullptr) pr->y = r;  // freed afterwards
}

void churn_class(int rounds, int per_round) {
  std::vector<void*> v(size_t(per_round), nullptr);
  for (int r = 0; r < rounds; ++r) {
    for (auto& p : v) {
      p = malloc(kSize);
      memset(p, 0x5a, kSize);  // a reuse of the reader's block overwrites its pattern
    }
    for (auto& p : v) free(p);
  }
}

// One case in this process. Returns 0 if the block stayed intact, 1 if not, 2 on a setup error.
int scenario(int call, int owner, int nthreads) {
  std::atomic<void*> shared{nullptr};
  std::atomic<int> phase{0};
  std::atomic<long> bad{0}, checks{0};
  std::thread third;
  if (owner == 1) {  // the freer (this thread) allocates
    void* x = malloc(kSize);
    fill(x);
    shared.store(x, std::memory_order_release);
  } else if (owner == 2) {  // a third thread allocates and stays alive until the end
    third = std::thread([&] {
      void* x = malloc(kSize);
      fill(x);
      shared.store(x, std::memory_order_release);
      while (phase.load(std::memory_order_acquire) != 3) std::this_thread::yield();
    });
  } else if (owner == 3) {  // a thread allocates and exits
    std::thread([&] {
      void* x = malloc(kSize);
      fill(x);
      shared.store(x, std::memory_order_release);
    }).join();
  }
  // Blocks the freer frees right after the reader's block, so full batches are published.
  std::vector<void*> pool(256);
  for (auto& p : pool) p = malloc(kSize);
  std::thread reader([&] {
    Prepared pr;
    void* x;
    if (owner == 0) {
      x = malloc(kSize);
      fill(x);
      shared.store(x, std::memory_order_release);
    } else {
      while ((x = shared.load(std::memory_order_acquire)) == nullptr) std::this_thread::yield();
    }
    prepare(call, &pr);
    last_call(call, &pr);
    phase.store(1, std::memory_order_release);
    // No allocator call until phase 3 (no I/O, no yield: sched_yield does not allocate, but
    // nothing here needs it).
    long b = 0, c = 0;
    while (phase.load(std::memory_order_acquire) != 3) {
      if (!intact(x)) ++b;
      ++c;
    }
    bad.store(b);
    checks.store(c);
    free(pr.y);
    ::operator delete(pr.yn);
  });
  while (phase.load(std::memory_order_acquire) != 1) std::this_thread::yield();
  free(shared.load());
  for (auto& p : pool) free(p);
  std::vector<std::thread> churners;
  for (int i = 0; i < nthreads - 2; ++i) churners.emplace_back([] { churn_class(20, 500); });
  churn_class(20, 2000);
  for (auto& t : churners) t.join();
  phase.store(3, std::memory_order_release);
  reader.join();
  if (third.joinable()) third.join();
  if (checks.load() == 0) return 2;
  if (bad.load() != 0) {
    fprintf(stderr, "implicit_matrix: block changed under its reader in %ld of %ld reads\n",
            bad.load(), checks.load());
    return 1;
  }
  return 0;
}

// Process state before the case: other threads came and went (their heaps and records are
// recycled), or the case runs in the child of a fork taken while another thread allocated.
int run_case(int call, int owner, int state, int nthreads) {
  if (state == 1) {
    for (int round = 0; round < 2; ++round) {
      std::vector<std::thread> ts;
      for (int i = 0; i < 8; ++i) ts.emplace_back([] { churn_class(2, 300); });
      for (auto& t : ts) t.join();
    }
  }
  if (state == 2) {
    std::atomic<bool> stop{false};
    std::thread busy([&] {
      while (!stop.load(std::memory_order_relaxed)) churn_class(1, 50);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    pid_t pid = fork();
    if (pid == 0) _exit(scenario(call, owner, nthreads));
    stop.store(true);
    busy.join();
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return 2;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 3;
  }
  return scenario(call, owner, nthreads);
}

struct Running {
  pid_t pid;
  int call, owner, state, threads;
};

int drive() {
  if (wfmm_option_get("deferred_free") != 1) {
    printf("implicit_matrix: run with WFMM_DEFERRED_FREE=1\n");
    return 2;
  }
  const char* self = "/proc/self/exe";
  int passed = 0, failed = 0;
  std::vector<Running> running;
  auto reap = [&](bool all) {
    while (!running.empty() && (all || running.size() >= 2)) {
      int st = 0;
      pid_t pid = wait(&st);
      if (pid < 0) return;
      for (size_t i = 0; i < running.size(); ++i) {
        if (running[i].pid != pid) continue;
        Running r = running[i];
        running.erase(running.begin() + long(i));
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
          ++passed;
        } else {
          ++failed;
          printf("FAILED: %s %s %s %d (%s %d)\n", kCalls[r.call], kOwners[r.owner],
                 kStates[r.state], r.threads, WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
        break;
      }
    }
  };
  // The environment of each case: this one, plus the floor for the min-bytes state.
  std::vector<char*> env_plain, env_floor;
  for (char** e = environ; *e != nullptr; ++e) {
    if (strncmp(*e, "WFMM_DEFER_MIN_BYTES=", 21) == 0) continue;
    env_plain.push_back(*e);
    env_floor.push_back(*e);
  }
  static char floor_var[] = "WFMM_DEFER_MIN_BYTES=65536";
  env_floor.push_back(floor_var);
  env_plain.push_back(nullptr);
  env_floor.push_back(nullptr);
  for (int s = 0; s < kNumStates; ++s)
    for (int t = 0; t < kNumThreadCounts; ++t)
      for (int o = 0; o < kNumOwners; ++o)
        for (int c = 0; c < kNumCalls; ++c) {
          reap(false);
          char nt[8];
          snprintf(nt, sizeof nt, "%d", kThreads[t]);
          char* argv[] = {const_cast<char*>(self), const_cast<char*>(kCalls[c]),
                          const_cast<char*>(kOwners[o]), const_cast<char*>(kStates[s]), nt,
                          nullptr};
          pid_t pid;
          int err = posix_spawn(&pid, self, nullptr, nullptr, argv,
                                s == 3 ? env_floor.data() : env_plain.data());
          if (err != 0) {
            printf("FAILED: cannot spawn %s: %s\n", self, strerror(err));
            ++failed;
            continue;
          }
          running.push_back({pid, c, o, s, kThreads[t]});
        }
  reap(true);
  printf("implicit_matrix: %d cases (calls x owners x states x threads)\n", passed + failed);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) return drive();
  if (argc != 5) {
    fprintf(stderr, "usage: %s [CALL OWNER STATE THREADS]\n", argv[0]);
    return 2;
  }
  int c = index_of(kCalls, kNumCalls, argv[1]);
  int o = index_of(kOwners, kNumOwners, argv[2]);
  int s = index_of(kStates, kNumStates, argv[3]);
  int t = atoi(argv[4]);
  if (c < 0 || o < 0 || s < 0 || t < 2) {
    fprintf(stderr, "implicit_matrix: unknown case\n");
    return 2;
  }
  return run_case(c, o, s, t);
}
