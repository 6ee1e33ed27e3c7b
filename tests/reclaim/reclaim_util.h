// Shared pieces of the reclamation tests: nodes with a checkable payload, failure
// recording from worker threads, statistics helpers and a watchdog for blocking calls.
//
// Every node carries a Payload: key, uid, magic = f(key, uid) and a state word. State is
// kLive from construction, kUnlinked once the thread that unlinked it is about to retire it
// (a reader holding a protected pointer may legitimately see either), and kDead in the
// destructor, which wfmm runs only when it reclaims the node. So a reader that sees kDead,
// the poison word (WFMM_POISON=1 fills reclaimed blocks with 0xdb), a wrong magic or a key
// other than the one it expects has touched a reclaimed or reused node.
#pragma once
#include <gtest/gtest.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <utility>

#include "test_util.h"
#include "wfmm/reclaim.hpp"
#include "wfmm/wfmm.h"

namespace rt {

extern uint64_t g_seed;
extern int g_scale;

inline constexpr uint64_t kPoisonWord = 0xdbdbdbdbdbdbdbdbull;
inline constexpr uint64_t kLive = 0x4c4956454c495645ull;      // "LIVELIVE"
inline constexpr uint64_t kUnlinked = 0x554e4c494e4b4544ull;  // "UNLINKED"
inline constexpr uint64_t kDead = 0x4445414444454144ull;      // "DEADDEAD"

inline long option(const char* name) { return wfmm_option_get(name); }
// The slow-path configuration of the ctest "_slow" entries.
inline bool forced_slow() { return option("protect_attempts") == 0; }

inline wfmm_stats stats() {
  wfmm_stats s;
  wfmm_stats_get(&s);
  return s;
}

// ---- failures seen by worker threads (gtest assertions are not for worker threads) ----

struct Failures {
  std::atomic<uint64_t> count{0};
  std::mutex m;
  std::string first;

  void add(const std::string& what) {
    if (count.fetch_add(1) < 5) {  // keep the first few messages
      std::lock_guard<std::mutex> g(m);
      if (!first.empty()) first += "\n";
      first += what;
    }
  }
  void reset() {
    count = 0;
    std::lock_guard<std::mutex> g(m);
    first.clear();
  }
};

inline Failures g_fail;

// Used at the end of each test body.
#define RT_EXPECT_NO_FAILURES()                                                               \
  EXPECT_EQ(rt::g_fail.count.load(), 0u) << "failures seen by worker threads (first ones):\n" \
                                         << rt::g_fail.first

inline std::string hex(uint64_t v) {
  char b[24];
  snprintf(b, sizeof b, "0x%llx", (unsigned long long)v);
  return b;
}

// ---- payload ----

inline uint64_t magic_for(uint64_t key, uint64_t uid) {
  return wfmm_test::mix(key * 0x9e3779b97f4a7c15ull ^ uid ^ 0x5bd1e995ull);
}

struct Payload {
  // Atomic (relaxed) so that a buggy reclaimer racing with a reader shows up as a failed
  // check rather than as a compiler-dependent outcome; fields never change while live.
  std::atomic<uint64_t> key;
  std::atomic<uint64_t> uid;
  std::atomic<uint64_t> magic;
  std::atomic<uint64_t> state;

  Payload(uint64_t k, uint64_t u) : key(k), uid(u), magic(magic_for(k, u)), state(kLive) {}
  ~Payload() {
    state.store(kDead, std::memory_order_relaxed);
    magic.store(~magic.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }

  void mark_unlinked() { state.store(kUnlinked, std::memory_order_relaxed); }

  // Empty when the payload is intact; otherwise what is wrong with it.
  std::string problem() const {
    uint64_t k = key.load(std::memory_order_relaxed);
    uint64_t u = uid.load(std::memory_order_relaxed);
    uint64_t m = magic.load(std::memory_order_relaxed);
    uint64_t s = state.load(std::memory_order_relaxed);
    if (k == kPoisonWord || u == kPoisonWord || m == kPoisonWord || s == kPoisonWord)
      return "node is poisoned (0xdb...): it was reclaimed while still reachable/protected";
    if (s == kDead) return "node's destructor ran (state DEAD): reclaimed while protected";
    if (s != kLive && s != kUnlinked) return "node state word is garbage " + hex(s) + " (reused?)";
    if (m != magic_for(k, u))
      return "node magic " + hex(m) + " does not match key " + hex(k) + " uid " + hex(u) +
             " (reused or reclaimed)";
    return {};
  }
};

// Checks p's payload; records a failure (with `where`) and returns false if it is bad.
template <class Node>
inline bool valid(const Node* n, const char* where) {
  std::string why = n->pl.problem();
  if (why.empty()) return true;
  g_fail.add(std::string(where) + ": " + why + " at " + hex(uint64_t(uintptr_t(n))));
  return false;
}

// Nodes live in wfmm blocks (the test library leaves plain new/malloc to glibc).
template <class T, class... A>
T* make(A&&... a) {
  void* m = wfmm_malloc(sizeof(T));
  if (m == nullptr) {
    fprintf(stderr, "wfmm_malloc(%zu) failed\n", sizeof(T));
    abort();
  }
  return new (m) T(std::forward<A>(a)...);
}

// For a node never published: no reader can hold it.
template <class T>
void destroy_now(T* p) {
  p->~T();
  wfmm_free(p);
}

// ---- watchdog: turns a hang in a blocking call into a clear failure ----

class Watchdog {
 public:
  Watchdog(std::string what, int seconds) : what_(std::move(what)) {
    t_ = std::thread([this, seconds] {
      std::unique_lock<std::mutex> g(m_);
      if (!cv_.wait_for(g, std::chrono::seconds(seconds), [this] { return done_; })) {
        wfmm_stats s = stats();
        fprintf(stderr,
                "WATCHDOG: %s did not finish within %d s (retired=%llu reclaimed=%llu "
                "pending=%llu era=%llu)\n",
                what_.c_str(), seconds, (unsigned long long)s.retired,
                (unsigned long long)s.reclaimed, (unsigned long long)s.retired_pending,
                (unsigned long long)s.era);
        fflush(stderr);
        abort();
      }
    });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> g(m_);
      done_ = true;
    }
    cv_.notify_all();
    t_.join();
  }

 private:
  std::string what_;
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread t_;
};

// barrier() (outside any region) with a watchdog, then everything retired so far must be
// reclaimed: every thread that retired has exited (publishing its batch) or is the caller.
inline void expect_all_reclaimed(const char* where) {
  {
    Watchdog w(std::string("wfmm::barrier() ") + where, 30);
    wfmm::barrier();
  }
  wfmm_stats s = stats();
  EXPECT_EQ(s.retired, s.reclaimed)
      << where << ": retired " << s.retired << " reclaimed " << s.reclaimed << " after barrier";
  EXPECT_EQ(s.retired_pending, 0u) << where << ": retired_pending after barrier";
  EXPECT_EQ(s.retired_pending_bytes, 0u) << where << ": retired_pending_bytes after barrier";
}

// A start line for oversubscribed threads, so they all run at once.
class StartLine {
 public:
  explicit StartLine(int n) : left_(n) {}
  void arrive_and_wait() {
    left_.fetch_sub(1);
    while (left_.load() > 0) std::this_thread::yield();
  }

 private:
  std::atomic<int> left_;
};

}  // namespace rt
