# foo.gp - chart of bench/results/foo.md: messages/s at saturation, latencies, proxy-process and whole-machine CPU per million messages (gnuplot -e "datafile='...'; outfile='...'").
if (!exists("datafile")) datafile = "bench/results/foo.dat"
if (!exists("outfile")) outfile = "bench/results/foo.png"
if (!exists("rate")) rate = "a fixed rate"
set terminal pngcairo size 1600,1050 font "sans,11"
set output outfile
set multiplot layout 2,2 title "pandit Foo benchmark (loopback, proxy pinned to 1 CPU, one worker; medians of the runs)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set xtics nomirror rotate by -25
set bmargin 5

set title "messages/s at saturation, closed loop (higher is better)"
set ylabel "messages per second"
set yrange [0:*]
set format y "%.1s%c"
plot datafile using 2:xtic(1) notitle lc rgb "#4477aa"

set title "CPU seconds per million messages (lower is better, log scale)"
set ylabel "CPU seconds"
set format y "%g"
set logscale y
set yrange [*:*]
set bmargin
set key below horizontal
plot datafile using 10:xtic(1) title "whole machine, at saturation" lc rgb "#aa3377", \
     '' using 6 title "proxy process, at saturation" lc rgb "#4477aa", \
     '' using 7 title "proxy process, at ".rate lc rgb "#66ccee"

set bmargin 5
set key inside top left vertical
set title "latency at ".rate.", open loop (lower is better, log scale)"
set ylabel "microseconds"
set yrange [1:*]
set key top left
plot datafile using 3:xtic(1) title "p50" lc rgb "#228833", \
     '' using 4 title "p99" lc rgb "#ccbb44", \
     '' using 5 title "p99.9" lc rgb "#ee6677"

set title "ping-pong round trip, 1 connection, depth 1 (lower is better, log scale)"
plot datafile using 8:xtic(1) title "p50" lc rgb "#228833", \
     '' using 9 title "p99" lc rgb "#ccbb44"
unset multiplot
