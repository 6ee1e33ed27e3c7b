// Stress tests with content checks: every block carries (tag, size) and a pattern derived
// from the tag; it is checked before every free and realloc. Flags: --seed=N, --scale=N
// (ctest runs --scale=1; larger values run proportionally longer).
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "test_util.h"
#include "wfmm/wfmm.h"

using wfmm_test::Rng;

namespace {

uint64_t g_seed = 1;
int g_scale = 1;

// Layout: [tag][size][pattern...]; size >= 16.
void* make_block(size_t n, uint64_t tag) {
  if (n < 16) n = 16;
  auto* p = static_cast<uint64_t*>(wfmm_malloc(n));
  if (p == nullptr) return nullptr;
  p[0] = tag;
  p[1] = n;
  wfmm_test::fill(p + 2, n - 16, tag);
  return p;
}

bool block_ok(void* b) {
  auto* p = static_cast<uint64_t*>(b);
  size_t n = p[1];
  if (n < 16 || n > (64u << 20) || wfmm_usable_size(b) < n) return false;
  return wfmm_test::check(p + 2, n - 16, p[0]);
}

void* resize_block(void* b, size_t n, uint64_t tag) {
  if (n < 16) n = 16;
  auto* p = static_cast<uint64_t*>(b);
  size_t old = p[1];
  uint64_t old_tag = p[0];
  auto* q = static_cast<uint64_t*>(wfmm_realloc(b, n));
  if (q == nullptr) return nullptr;
  size_t keep = old < n ? old : n;
  if (!wfmm_test::check(q + 2, keep - 16, old_tag)) return nullptr;
  q[0] = tag;
  q[1] = n;
  wfmm_test::fill(q + 2, n - 16, tag);
  return q;
}

size_t random_size(Rng& r) {
  unsigned k = unsigned(r.below(100));
  if (k < 80) return 16 + r.below(256);
  if (k < 95) return 256 + r.below(8192);
  if (k < 99) return 8192 + r.below(200000);
  return 1u << 20 | r.below(5u << 20);
}

}  // namespace

TEST(Stress, RandomAllocFreeReallocWithTransfersOn8Threads) {
  constexpr int kThreads = 8;
  constexpr size_t kTransfer = 1000;
  std::vector<std::atomic<void*>> transfer(kTransfer);
  for (auto& t : transfer) t.store(nullptr);
  std::atomic<int> failures{0};
  auto work = [&](int id) {
    Rng r(g_seed * 1000 + id);
    std::vector<void*> mine;
    uint64_t tag = uint64_t(id) << 40;
    int iters = 40000 * g_scale;
    for (int i = 0; i < iters; ++i) {
      unsigned op = unsigned(r.below(100));
      if (op < 45 || mine.empty()) {
        void* b = make_block(random_size(r), ++tag);
        if (b == nullptr) {
          failures++;
          return;
        }
        mine.push_back(b);
      } else if (op < 80) {
        size_t k = r.below(mine.size());
        if (!block_ok(mine[k])) {
          failures++;
          return;
        }
        wfmm_free(mine[k]);
        mine[k] = mine.back();
        mine.pop_back();
      } else if (op < 90) {
        size_t k = r.below(mine.size());
        if (!block_ok(mine[k])) {
          failures++;
          return;
        }
        void* q = resize_block(mine[k], random_size(r), ++tag);
        if (q == nullptr) {
          failures++;
          return;
        }
        mine[k] = q;
      } else {
        // Swap with a shared slot: the block will be freed by whichever thread takes it.
        size_t k = r.below(mine.size());
        void* got = transfer[r.below(kTransfer)].exchange(mine[k]);
        if (got != nullptr) {
          if (!block_ok(got)) {
            failures++;
            return;
          }
          mine[k] = got;
        } else {
          mine[k] = mine.back();
          mine.pop_back();
        }
      }
    }
    for (void* b : mine) {
      if (!block_ok(b)) failures++;
      wfmm_free(b);
    }
  };
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; ++i) ts.emplace_back(work, i);
  for (auto& t : ts) t.join();
  for (auto& t : transfer) {
    void* b = t.exchange(nullptr);
    if (b != nullptr) {
      EXPECT_TRUE(block_ok(b));
      wfmm_free(b);
    }
  }
  EXPECT_EQ(failures.load(), 0);
}

TEST(Stress, ProducerConsumerAllFreesRemote) {
  constexpr int kPairs = 4;
  std::mutex m;
  std::condition_variable cv;
  std::deque<void*> q;
  std::atomic<int> producers_left{kPairs};
  std::atomic<int> failures{0};
  const int per_producer = 100000 * g_scale;
  auto producer = [&](int id) {
    Rng r(g_seed * 77 + id);
    for (int i = 0; i < per_producer; ++i) {
      void* b = make_block(16 + r.below(2000), (uint64_t(id) << 32) | uint64_t(i));
      std::lock_guard<std::mutex> g(m);
      q.push_back(b);
      if (q.size() == 1) cv.notify_one();
    }
    producers_left--;
    cv.notify_all();
  };
  auto consumer = [&] {
    for (;;) {
      std::unique_lock<std::mutex> g(m);
      cv.wait(g, [&] { return !q.empty() || producers_left.load() == 0; });
      if (q.empty()) return;
      void* b = q.front();
      q.pop_front();
      g.unlock();
      if (!block_ok(b)) failures++;
      wfmm_free(b);
    }
  };
  wfmm_stats before;
  wfmm_stats_get(&before);
  std::vector<std::thread> ts;
  for (int i = 0; i < kPairs; ++i) ts.emplace_back(producer, i);
  for (int i = 0; i < kPairs; ++i) ts.emplace_back(consumer);
  for (auto& t : ts) t.join();
  EXPECT_EQ(failures.load(), 0);
  wfmm_stats after;
  wfmm_stats_get(&after);
  // Every produced block was freed and counted by its (remote) freer. When this program
  // itself runs on wfmm (preloaded), the queue's own chunks are wfmm blocks too: allow them.
  EXPECT_LE(after.blocks_in_use, before.blocks_in_use + 64);
  EXPECT_GE(after.free_count - before.free_count, uint64_t(kPairs) * uint64_t(per_producer));
}

TEST(Stress, ThreadChurnLeavesBlocksForOthersAndDoesNotGrow) {
  const int kThreads = 20000 * g_scale;
  std::vector<void*> left(size_t(kThreads) * 4, nullptr);
  wfmm_stats s0, mid, end;
  wfmm_stats_get(&s0);
  std::atomic<int> failures{0};
  auto run_batch = [&](int from, int to) {
    // Two threads at a time; each leaves 4 blocks behind, freed by main after it exited.
    for (int i = from; i < to; i += 2) {
      std::thread a([&, i] {
        Rng r(g_seed + i);
        std::vector<void*> tmp;
        for (int k = 0; k < 50; ++k) tmp.push_back(make_block(16 + r.below(600), k));
        for (int k = 0; k < 4; ++k)
          left[size_t(i) * 4 + k] = make_block(32 + r.below(3000), uint64_t(i) * 4 + k);
        for (void* b : tmp) {
          if (!block_ok(b)) failures++;
          wfmm_free(b);
        }
      });
      std::thread b([&, i] {
        for (int k = 0; k < 4; ++k)
          left[size_t(i + 1) * 4 + k] = make_block(100000, uint64_t(i + 1) * 4 + k);
      });
      a.join();
      b.join();
      // Free what the previous pair left: its owners have exited.
      if (i >= 2) {
        for (int t = i - 2; t < i; ++t) {
          for (int k = 0; k < 4; ++k) {
            void*& p = left[size_t(t) * 4 + k];
            if (!block_ok(p)) failures++;
            wfmm_free(p);
            p = nullptr;
          }
        }
      }
    }
  };
  run_batch(0, kThreads / 4);
  wfmm_stats_get(&mid);
  run_batch(kThreads / 4, kThreads);
  wfmm_stats_get(&end);
  EXPECT_EQ(failures.load(), 0);
  // Memory after 4x more threads is what it was after the first quarter (heaps, segments
  // and pages are reused): allow a few segments of slack.
  EXPECT_LE(end.bytes_mapped, mid.bytes_mapped + (16u << 20))
      << "mapped grew from " << mid.bytes_mapped << " to " << end.bytes_mapped;
  EXPECT_LE(end.threads, s0.threads + 2);
  for (void* p : left) {
    if (p != nullptr) {
      EXPECT_TRUE(block_ok(p));
      wfmm_free(p);
    }
  }
}

TEST(Stress, ForkFromMainAndWorkerWhileOtherThreadsAllocate) {
  std::atomic<bool> stop{false};
  constexpr int kWorkers = 4;
  constexpr size_t kShared = 256;
  std::vector<std::atomic<void*>> shared(kShared);
  for (auto& s : shared) s.store(nullptr);
  std::atomic<int> failures{0};
  std::vector<std::thread> ts;
  for (int w = 0; w < kWorkers; ++w) {
    ts.emplace_back([&, w] {
      Rng r(g_seed * 31 + w);
      uint64_t tag = uint64_t(w) << 48;
      while (!stop.load(std::memory_order_relaxed)) {
        void* b = make_block(16 + r.below(5000), ++tag);
        void* old = shared[r.below(kShared)].exchange(b);
        if (old != nullptr) {
          if (!block_ok(old)) failures++;
          wfmm_free(old);
        }
      }
    });
  }
  // Half the forks come from the main thread, half from a worker that allocates too.
  auto fork_and_check = [&]() -> int {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
      alarm(20);  // a deadlock in the child fails the test instead of hanging it
      int bad = 0;
      // Blocks allocated by the parent's other threads: check and free them.
      for (auto& s : shared) {
        void* b = s.exchange(nullptr);
        if (b != nullptr) {
          if (!block_ok(b)) ++bad;
          wfmm_free(b);
        }
      }
      std::vector<void*> mine;
      for (int i = 0; i < 20000; ++i) mine.push_back(make_block(16 + size_t(i % 3000), i));
      std::thread t([&] {
        for (int i = 0; i < 1000; ++i) wfmm_free(make_block(100, i));
      });
      t.join();
      for (void* b : mine) {
        if (!block_ok(b)) ++bad;
        wfmm_free(b);
      }
      _exit(bad == 0 ? 0 : 3);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -2;
    if (!WIFEXITED(status)) return 1000 + WTERMSIG(status);
    return WEXITSTATUS(status);
  };
  const int forks = 15 * g_scale;
  std::atomic<int> worker_result{0};
  std::thread forker([&] {
    Rng r(g_seed * 131);
    for (int f = 0; f < forks && worker_result.load() == 0; ++f) {
      for (int k = 0; k < 200; ++k) wfmm_free(make_block(16 + r.below(4000), k));
      worker_result = fork_and_check();
    }
  });
  for (int f = 0; f < forks; ++f) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    int rc = fork_and_check();
    if (rc != 0) {  // record and stop; the threads below must still be joined
      ADD_FAILURE() << "child of the main thread: exit status " << rc << " (1000+ = signal)";
      break;
    }
  }
  forker.join();
  EXPECT_EQ(worker_result.load(), 0) << "child of a worker: exit status (1000+ = signal)";
  stop = true;
  for (auto& t : ts) t.join();
  for (auto& s : shared) {
    void* b = s.exchange(nullptr);
    if (b != nullptr) {
      EXPECT_TRUE(block_ok(b));
      wfmm_free(b);
    }
  }
  EXPECT_EQ(failures.load(), 0);
}

// Thread exit in every order: a pthread key destructor created after wfmm's (so it runs
// after wfmm abandoned the heap) allocates and frees; a thread_local's destructor frees.
// Blocks made during teardown stay valid and are freed later by another thread.
namespace {
pthread_key_t g_late_key;
std::atomic<void*> g_teardown_blocks[64];
std::atomic<int> g_teardown_failures{0};

void late_destructor(void* arg) {
  int i = int(reinterpret_cast<uintptr_t>(arg));
  void* tmp = make_block(300, 999);
  if (!block_ok(tmp)) g_teardown_failures++;
  wfmm_free(tmp);
  g_teardown_blocks[i % 64].store(make_block(64 + size_t(i), uint64_t(i)));
}

struct LocalOwner {
  void* p = nullptr;
  ~LocalOwner() {
    if (p != nullptr && !block_ok(p)) g_teardown_failures++;
    wfmm_free(p);
  }
};
thread_local LocalOwner t_owner;
}  // namespace

TEST(Stress, AllocationDuringThreadTeardown) {
  // Make sure wfmm's own key exists (first allocation of the process) before ours.
  wfmm_free(wfmm_malloc(1));
  ASSERT_EQ(pthread_key_create(&g_late_key, late_destructor), 0);
  const int rounds = 200 * g_scale;
  for (int r = 0; r < rounds; ++r) {
    std::thread t([r] {
      t_owner.p = make_block(128, 7);
      pthread_setspecific(g_late_key, reinterpret_cast<void*>(uintptr_t(r + 1)));
      wfmm_free(make_block(1000, 1));
    });
    t.join();
    void* b = g_teardown_blocks[(r + 1) % 64].exchange(nullptr);
    ASSERT_NE(b, nullptr);
    ASSERT_TRUE(block_ok(b));
    wfmm_free(b);
  }
  EXPECT_EQ(g_teardown_failures.load(), 0);
  pthread_key_delete(g_late_key);
}

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (strncmp(argv[i], "--seed=", 7) == 0)
      g_seed = strtoull(argv[i] + 7, nullptr, 10);
    else if (strncmp(argv[i], "--scale=", 8) == 0)
      g_scale = atoi(argv[i] + 8);
  }
  if (g_scale < 1) g_scale = 1;
  printf("stress: seed=%llu scale=%d\n", (unsigned long long)g_seed, g_scale);
  return RUN_ALL_TESTS();
}
