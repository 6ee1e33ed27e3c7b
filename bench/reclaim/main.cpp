// bench_reclaim: one configuration of the reclamation benchmark per process, one JSON line
// on stdout. bench/reclaim/run_reclaim.py runs the grid and writes bench/results/reclaim.md.
//
// Every scheme runs on the same allocator: the binary links libwfmm.so, so malloc and
// operator new are wfmm's for xenium's schemes and liburcu too.
//
// usage: bench_reclaim --ds=map|set|msq|rq --scheme=NAME [--threads=N] [--keys=K]
//                      [--mix=read|write] [--duration=S] [--stall] [--region=op|none]
//                      [--seed=N] [--series=MS]
//        bench_reclaim --list-schemes
//   NAME: wfmm ebr nebr debra qsbr hp he stamp leak (see scheme_*.cpp), and urcu_qsbr
//   urcu_memb (liburcu's cds_lfht, --ds=map only; built when liburcu-dev is installed).
//   map: harris_michael_hash_map<u64,u64> with 65536 buckets (urcu: cds_lfht, 65536 buckets);
//   set: harris_michael_list_based_set<u64>; msq: michael_scott_queue<u64>; rq:
//   ramalhete_queue<u64*> (512 entries per node).
//   --mix=read: 90% find, 5% insert, 5% erase; write: 50% insert, 50% erase; keys uniform in
//   [0, K), half of them inserted first. Queues: 50% push, 50% pop after K/2 pushes (--mix
//   is ignored).
//   --stall: one extra thread takes a region_guard and a guard_ptr on a node outside the
//   container (urcu: a read-side section) before the workers start and holds both until
//   they have stopped.
//   --region=op (default): every operation runs inside the scheme's region_guard.
//   --series=MS: also print a time series, one point every MS ms (see "series" below).
//
// Output fields: mops (operations per microsecond over all workers); pending (nodes retired
// and not yet reclaimed when the workers stopped: retired - reclaimed, counted through the
// node's deleter, see counting_deleter in harness.hpp); retired, reclaimed (the two counts);
// unreclaimed_mean, unreclaimed_peak (retired - reclaimed sampled every 10 ms while the
// workers ran); made, gone, linked (node constructions, destructions, nodes the container's
// destructor deleted); linked_expected (prefill + successful inserts/pushes - successful
// erases/pops (+1 dummy node for msq); -1 for rq, whose nodes hold 512 items); bad (values
// read back that differ from what was stored: must be 0); wfmm_retired_pending etc. (wfmm_stats when the workers stopped,
// whatever the scheme: allocator-wide); peak_rss_mib (VmHWM when the workers stopped);
// peak_* fields are sampled every 10 ms (peak_live: constructed - destroyed nodes, linked ones
// included; bytes_*: wfmm_stats). series: [t_ms, unreclaimed, wfmm_retired_pending, ops so
// far, bytes_in_use] every MS ms.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "schemes.hpp"

namespace {

const char* const kSchemes =
    "wfmm ebr nebr debra qsbr hp he stamp leak"
#ifdef WFMM_BENCH_URCU
    " urcu_qsbr urcu_memb"
#endif
    ;

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "bench_reclaim: %s\nusage: bench_reclaim --ds=map|set|msq|rq --scheme=NAME "
               "[--threads=N] [--keys=K] [--mix=read|write] [--duration=S] [--stall] "
               "[--region=op|none] [--seed=N] [--series=MS]\n       bench_reclaim "
               "--list-schemes\nschemes: %s\n",
               why, kSchemes);
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
    else if (const char* v = val("--series")) cfg.series_ms = std::atoi(v);
    else if (const char* v = val("--region")) {
      if (std::strcmp(v, "op") == 0) cfg.region_per_op = true;
      else if (std::strcmp(v, "none") == 0) cfg.region_per_op = false;
      else usage("--region takes op or none");
    } else if (a == "--stall") cfg.stall = true;
    else if (a == "--list-schemes") {
      std::printf("%s\n", kSchemes);
      return 0;
    } else if (a == "--help" || a == "-h") usage("help");
    else usage(("unknown argument " + a).c_str());
  }
  if (cfg.threads < 1 || cfg.threads > 256) usage("--threads must be 1..256");
  if (cfg.keys < 2) usage("--keys must be >= 2");
  if (cfg.mix != "read" && cfg.mix != "write") usage("--mix takes read or write");
  if (cfg.duration <= 0) usage("--duration must be > 0");
  if (cfg.series_ms < 0) usage("--series must be >= 0");

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
  else if (s == "leak") r = rbench::run_leak(cfg);
#ifdef WFMM_BENCH_URCU
  else if (s == "urcu_qsbr") r = rbench::run_urcu_qsbr(cfg);
  else if (s == "urcu_memb") r = rbench::run_urcu_memb(cfg);
#endif
  else usage(("unknown --scheme=" + s).c_str());

  const bool queue = cfg.ds == "msq" || cfg.ds == "rq";
  const bool urcu = s.compare(0, 5, "urcu_") == 0;
  std::printf(
      "{\"ds\":\"%s\",\"scheme\":\"%s\",\"mix\":\"%s\",\"threads\":%d,\"keys\":%llu,"
      "\"stall\":%s,\"region\":\"%s\",\"duration\":%.3f,\"seconds\":%.4f,\"ops\":%llu,"
      "\"mops\":%.4f,\"pending\":%lld,\"retired\":%lld,\"reclaimed\":%lld,"
      "\"unreclaimed_mean\":%.1f,\"unreclaimed_peak\":%lld,\"samples\":%llu,"
      "\"made\":%lld,\"gone\":%lld,\"linked\":%lld,\"linked_expected\":%lld,\"bad\":%llu,"
      "\"wfmm_retired_pending\":%llu,\"wfmm_retired\":%llu,\"wfmm_reclaimed\":%llu,"
      "\"peak_rss_mib\":%.1f,\"peak_live\":%lld,\"peak_wfmm_retired_pending\":%llu,"
      "\"bytes_in_use\":%llu,\"peak_bytes_in_use\":%llu,\"bytes_mapped\":%llu,"
      "\"peak_bytes_mapped\":%llu",
      cfg.ds.c_str(), s.c_str(), queue ? "pushpop" : cfg.mix.c_str(), cfg.threads,
      (unsigned long long)cfg.keys, cfg.stall ? "true" : "false",
      (cfg.region_per_op || urcu) ? "op" : "none", cfg.duration, r.seconds,
      (unsigned long long)r.ops, r.ops / r.seconds / 1e6, (long long)r.pending,
      (long long)r.retired, (long long)r.reclaimed, r.unreclaimed_mean,
      (long long)r.unreclaimed_peak, (unsigned long long)r.samples, (long long)r.made,
      (long long)r.gone, (long long)r.chain, (long long)r.linked_expected,
      (unsigned long long)r.bad, (unsigned long long)r.wfmm_retired_pending,
      (unsigned long long)r.wfmm_retired, (unsigned long long)r.wfmm_reclaimed, r.peak_rss_mib,
      (long long)r.peak_live, (unsigned long long)r.peak_wfmm_retired_pending,
      (unsigned long long)r.bytes_in_use, (unsigned long long)r.peak_bytes_in_use,
      (unsigned long long)r.bytes_mapped, (unsigned long long)r.peak_bytes_mapped);
  if (cfg.series_ms > 0) {
    std::printf(",\"series_ms\":%d,\"series\":[", cfg.series_ms);
    for (std::size_t i = 0; i < r.series.size(); ++i) {
      const rbench::sample& p = r.series[i];
      std::printf("%s[%.1f,%lld,%llu,%llu,%llu]", i ? "," : "", p.t_ms, (long long)p.unreclaimed,
                  (unsigned long long)p.wfmm_pending, (unsigned long long)p.ops,
                  (unsigned long long)p.bytes_in_use);
    }
    std::printf("]");
  }
  std::printf("}\n");
  return 0;
}
