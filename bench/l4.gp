# l4.gp - chart of bench/results/l4.md: throughput, latency and whole-machine CPU per GB per setup (gnuplot -e "datafile='...'; outfile='...'").
if (!exists("datafile")) datafile = "bench/results/l4.dat"
if (!exists("outfile")) outfile = "bench/results/l4.png"
set terminal pngcairo size 2400,700 font "sans,11"
set output outfile
set multiplot layout 1,3 title "pandit L4 benchmark (loopback, proxy pinned to 1 CPU, one worker)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set xtics nomirror rotate by -30
set bmargin 8
set yrange [0:*]

set title "iperf3 throughput (higher is better)"
set ylabel "Gbit/s"
plot datafile using 2:xtic(1) title "1 stream" lc rgb "#4477aa", \
     '' using 3 title "8 streams" lc rgb "#66ccee"

set key top left
set title "whole-machine CPU per GB moved, /proc/stat (lower is better)"
set ylabel "CPU seconds per GB"
plot datafile using 7:xtic(1) title "1 stream" lc rgb "#aa3377", \
     '' using 8 title "8 streams" lc rgb "#dd88bb"

set title "sockperf ping-pong round trip, 64 B (lower is better, log scale)"
set ylabel "microseconds"
set logscale y
set yrange [1:*]
plot datafile using 4:xtic(1) title "p50" lc rgb "#228833", \
     '' using 5 title "p99" lc rgb "#ccbb44", \
     '' using 6 title "p99.9" lc rgb "#ee6677"
unset multiplot
