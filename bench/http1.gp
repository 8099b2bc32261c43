# http1.gp - chart of bench/results/http1.md: requests/s under wrk, latency at a fixed rate, proxy CPU per request (gnuplot -e "datafile='...'; outfile='...'; rate='...'").
if (!exists("datafile")) datafile = "bench/results/http1.dat"
if (!exists("outfile")) outfile = "bench/results/http1.png"
if (!exists("rate")) rate = "a fixed rate"
set terminal pngcairo size 1800,600 font "sans,11"
set output outfile
set multiplot layout 1,3 title "pandit HTTP/1.1 benchmark (loopback, proxy pinned to 1 CPU, one worker; medians of the runs)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set xtics nomirror rotate by -20
set bmargin 5

set title "requests/s, wrk, 50 keep-alive connections (higher is better)"
set ylabel "requests per second"
set yrange [0:*]
set format y "%.0s%c"
plot datafile using 2:xtic(1) notitle lc rgb "#4477aa"

set title "latency at ".rate.", h2load --h1 (lower is better, log scale)"
set ylabel "microseconds"
set format y "%g"
set logscale y
set yrange [10:*]
set key top left
plot datafile using 3:xtic(1) title "p50" lc rgb "#228833", \
     '' using 4 title "p90" lc rgb "#66ccee", \
     '' using 5 title "p99" lc rgb "#ccbb44", \
     '' using 6 title "p99.9" lc rgb "#ee6677"

set title "proxy CPU per request (lower is better)"
set ylabel "CPU microseconds"
unset logscale y
set yrange [0:*]
set key top left
plot datafile using 7:xtic(1) title "under wrk" lc rgb "#4477aa", \
     '' using 8 title "at ".rate lc rgb "#66ccee"
unset multiplot
