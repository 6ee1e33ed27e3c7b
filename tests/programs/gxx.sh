#!/usr/bin/env bash
# g++: compile a small C++ program with templates and the standard library, then run it.
set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cat > "$d/p.cpp" <<'CPP'
#include <algorithm>
#include <iostream>
#include <map>
#include <numeric>
#include <string>
#include <vector>
template <class T> T sum(const std::vector<T>& v) { return std::accumulate(v.begin(), v.end(), T{}); }
int main() {
  std::map<std::string, std::vector<long>> m;
  for (long i = 0; i < 100000; ++i) m["k" + std::to_string(i % 777)].push_back(i * i % 1009);
  long t = 0;
  for (auto& [k, v] : m) { std::sort(v.begin(), v.end()); t += sum(v) + long(k.size()); }
  std::cout << m.size() << " " << t << "\n";
}
CPP
g++ -O2 -std=c++17 -o "$d/p" "$d/p.cpp"
"$d/p"
