// bench_reclaim: one configuration of the reclamation benchmark per process, one JSON line
// on stdout. bench/reclaim/run_reclaim.py runs the grid and writes bench/results/reclaim.md.
//
// Every scheme runs on the same allocator: the binary links libwfmm.so, so malloc and
// operator new are wfmm's for xenium's schemes too.
//
// usage: bench_reclaim --ds=map|set|msq|rq --scheme=NAME [--threads=N] [--keys=K]
//                      [--mix=read|write] [--duration=S] [--stall] [--region=op|none] [--seed=N]
//   NAME: wfmm ebr nebr debra qsbr hp he stamp (see scheme_*.cpp)
//   map: harris_michael_hash_map<u64,u64> with 65536 buckets; set: harris_michael_list_based_set
//   <u64>; msq: michael_scott_queue<u64>; rq: ramalhete_queue<u64*> (512 entries per node).
//   --mix=read: 90% find, 5% insert, 5% erase; write: 50% insert, 50% erase; keys uniform in
//   [0, K), half of them inserted first. Queues: 50% push, 50% pop after K/2 pushes (--mix
//   is ignored).
//   --stall: one extra thread takes a region_guard and a guard_ptr on a node outside the
//   container before the workers start and holds both until they have stopped.
//   --region=op (default): every operation runs inside the scheme's region_guard.
//
// Output fields: mops (operations per microsecond over all workers); pending (nodes retired
// and not yet destroyed when the workers stopped: constructed - destroyed - still linked,
// counted by the node base class); wfmm_retired_pending (wfmm_stats, whatever the scheme);
// peak_rss_mib (VmHWM when the workers stopped); peak_* fields are sampled every 10 ms during
// the run (peak_live: constructed - destroyed nodes, linked ones included; bytes_*: wfmm_stats,
// allocator-wide, so meaningful for every scheme).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "schemes.hpp"

namespace {

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "bench_reclaim: %s\nusage: bench_reclaim --ds=map|set|msq|rq --scheme=NAME "
               "[--threads=N] [--keys=K] [--mix=read|write] [--duration=S] [--stall] "
               "[--region=op|none] [--seed=N]\n",
               why);
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  rbench::config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&](const char* name) -> const char* {
      std::size_t n = std::strlen(name);
      if (a.compare(0, n, name) == 0 && a.size() > n && a[n] == '=') return argv[i] + n + 1;
      return nullptr;
    };
    if (const char* v = val("--ds")) cfg.ds = v;
    else if (const char* v = val("--scheme")) cfg.scheme = v;
    else if (const char* v = val("--mix")) cfg.mix = v;
    else if (const char* v = val("--threads")) cfg.threads = std::atoi(v);
    else if (const char* v = val("--keys")) cfg.keys = std::strtoull(v, nullptr, 10);
    else if (const char* v = val("--duration")) cfg.duration = std::atof(v);
    else if (const char* v = val("--seed")) cfg.seed = std::strtoull(v, nullptr, 10);
    else if (const char* v = val("--region")) {
      if (std::strcmp(v, "op") == 0) cfg.region_per_op = true;
      else if (std::strcmp(v, "none") == 0) cfg.region_per_op = false;
      else usage("--region takes op or none");
    } else if (a == "--stall") cfg.stall = true;
    else if (a == "--help" || a == "-h") usage("help");
    else usage(("unknown argument " + a).c_str());
  }
  if (cfg.threads < 1 || cfg.threads > 256) usage("--threads must be 1..256");
  if (cfg.keys < 2) usage("--keys must be >= 2");
  if (cfg.mix != "read" && cfg.mix != "write") usage("--mix takes read or write");
  if (cfg.duration <= 0) usage("--duration must be > 0");

  rbench::result r;
  const std::string& s = cfg.scheme;
  if (s == "wfmm") r = rbench::run_wfmm(cfg);
  else if (s == "ebr") r = rbench::run_ebr(cfg);
  else if (s == "nebr") r = rbench::run_nebr(cfg);
  else if (s == "debra") r = rbench::run_debra(cfg);
  else if (s == "qsbr") r = rbench::run_qsbr(cfg);
  else if (s == "hp") r = rbench::run_hp(cfg);
  else if (s == "he") r = rbench::run_he(cfg);
  else if (s == "stamp") r = rbench::run_stamp(cfg);
  else usage(("unknown --scheme=" + s).c_str());

  const bool queue = cfg.ds == "msq" || cfg.ds == "rq";
  std::printf(
      "{\"ds\":\"%s\",\"scheme\":\"%s\",\"mix\":\"%s\",\"threads\":%d,\"keys\":%llu,"
      "\"stall\":%s,\"region\":\"%s\",\"duration\":%.3f,\"seconds\":%.4f,\"ops\":%llu,"
      "\"mops\":%.4f,\"pending\":%lld,\"made\":%lld,\"gone\":%lld,\"linked\":%lld,"
      "\"wfmm_retired_pending\":%llu,\"wfmm_retired\":%llu,\"wfmm_reclaimed\":%llu,"
      "\"peak_rss_mib\":%.1f,\"peak_live\":%lld,\"peak_wfmm_retired_pending\":%llu,"
      "\"bytes_in_use\":%llu,\"peak_bytes_in_use\":%llu,\"bytes_mapped\":%llu,"
      "\"peak_bytes_mapped\":%llu}\n",
      cfg.ds.c_str(), s.c_str(), queue ? "pushpop" : cfg.mix.c_str(), cfg.threads,
      (unsigned long long)cfg.keys, cfg.stall ? "true" : "false", cfg.region_per_op ? "op" : "none",
      cfg.duration, r.seconds, (unsigned long long)r.ops, r.ops / r.seconds / 1e6,
      (long long)r.pending, (long long)r.made, (long long)r.gone, (long long)r.chain,
      (unsigned long long)r.wfmm_retired_pending, (unsigned long long)r.wfmm_retired,
      (unsigned long long)r.wfmm_reclaimed, r.peak_rss_mib, (long long)r.peak_live,
      (unsigned long long)r.peak_wfmm_retired_pending, (unsigned long long)r.bytes_in_use,
      (unsigned long long)r.peak_bytes_in_use, (unsigned long long)r.bytes_mapped,
      (unsigned long long)r.peak_bytes_mapped);
  return 0;
}
