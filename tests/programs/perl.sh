#!/usr/bin/env bash
# perl: hashes, regular expressions, sorting and string building. SCALE multiplies the work.
s=${SCALE:-1}
exec perl -e '
my $s = shift; my %h; my $n = 300000 * $s;
for my $i (1..$n) { $h{"key$i"} = join(",", map { $_ * $i } 1..($i % 9)); }
for my $i (grep { $_ % 4 == 0 } 1..$n) { delete $h{"key$i"}; }
my $total = 0; my $matches = 0;
for my $k (sort keys %h) { $total += length($h{$k}); $matches++ if $h{$k} =~ /(\d)\1{2}/; }
my @words = map { scalar reverse("w$_") } 1..(100000 * $s);
my $joined = join(" ", sort @words);
print scalar(keys %h), " $total $matches ", length($joined), "\n";
' "$s"
