# lib_bench.sh — shell helpers shared by the benchmark scripts (sourced, not run; outside
# bench.sh's scripts/bench_*.sh glob by its name).

# median: the median of the numbers on stdin, one a line (the upper one of an even count)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# with_kernel K CMD...: runs CMD in the CPU setting K, for both minidet and torchvision:
#   default  OpenBLAS's own kernel choice for this CPU (OPENBLAS_CORETYPE unset);
#   avx2     an AVX2-only machine: OpenBLAS's Haswell kernel, torch's oneDNN capped at AVX2
#            (ONEDNN_MAX_CPU_ISA; oneDNN ignores OPENBLAS_CORETYPE and would otherwise run its
#            convolutions with AVX-512, which such a machine lacks) and minidet's own GEMM kept off
#            AVX-512 (MINIDET_MAX_CPU_ISA);
#   any other word is passed as OPENBLAS_CORETYPE (Haswell: OpenBLAS's AVX2 kernel; torch's oneDNN
#            and minidet's own GEMM still on the CPU's widest ISA, as each decides by the CPU).
with_kernel() {
    case $1 in
    default) shift; env -u OPENBLAS_CORETYPE "$@" ;;
    avx2) shift; env OPENBLAS_CORETYPE=Haswell ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 MINIDET_MAX_CPU_ISA=AVX2 "$@" ;;
    *) kc=$1; shift; env OPENBLAS_CORETYPE="$kc" "$@" ;;
    esac
}
