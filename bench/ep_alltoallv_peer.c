/* The peer of bench/ep_bench.py: a plain MPI_Alltoallv of given bytes per
 * sender and receiver, timed as the expert-parallel runtime's exchanges
 * would be if they were nothing but the transfer.
 *
 *   mpirun -np N ep_alltoallv_peer MATRIX.txt REPEAT [fresh]
 *
 * MATRIX.txt holds N lines of N byte counts (line s: what rank s sends to
 * each rank). Every rank times REPEAT exchanges after a barrier each; rank 0
 * prints the median over repeats of the slowest rank's time, in seconds.
 * With `fresh`, every exchange receives into newly mapped memory, as a
 * compiled layer's exchange does into the buffer it allocates per call
 * (first-touch page faults included). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int compareDoubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, size;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (argc != 3 && argc != 4) {
    if (rank == 0)
      fprintf(stderr, "usage: ep_alltoallv_peer MATRIX.txt REPEAT [fresh]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  int repeat = atoi(argv[2]);
  int fresh = argc == 4 && !strcmp(argv[3], "fresh");
  long long *bytes = malloc(sizeof(long long) * size * size);
  FILE *f = fopen(argv[1], "r");
  for (int i = 0; f && i < size * size; ++i)
    if (fscanf(f, "%lld", &bytes[i]) != 1) {
      fprintf(stderr, "ep_alltoallv_peer: %s must hold %d x %d byte counts\n", argv[1], size, size);
      MPI_Abort(MPI_COMM_WORLD, 2);
    }
  if (!f)
    MPI_Abort(MPI_COMM_WORLD, 2);
  fclose(f);
  int *sendCounts = malloc(sizeof(int) * size), *sendOffsets = malloc(sizeof(int) * size);
  int *recvCounts = malloc(sizeof(int) * size), *recvOffsets = malloc(sizeof(int) * size);
  long long sendTotal = 0, recvTotal = 0;
  for (int d = 0; d < size; ++d) {
    sendCounts[d] = (int)bytes[rank * size + d];
    sendOffsets[d] = (int)sendTotal;
    sendTotal += sendCounts[d];
    recvCounts[d] = (int)bytes[d * size + rank];
    recvOffsets[d] = (int)recvTotal;
    recvTotal += recvCounts[d];
  }
  char *send = calloc(sendTotal + 1, 1), *recv = calloc(recvTotal + 1, 1);
  double *times = malloc(sizeof(double) * repeat);
  for (int r = 0; r < repeat; ++r) {
    char *target = recv;
    if (fresh)
      target = mmap(NULL, recvTotal + 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    MPI_Alltoallv(send, sendCounts, sendOffsets, MPI_BYTE, target, recvCounts, recvOffsets, MPI_BYTE,
                  MPI_COMM_WORLD);
    double mine = MPI_Wtime() - start, slowest = 0;
    if (fresh)
      munmap(target, recvTotal + 1);
    MPI_Reduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    times[r] = slowest;
  }
  if (rank == 0) {
    qsort(times, repeat, sizeof(double), compareDoubles);
    printf("%.9f\n", times[repeat / 2]);
  }
  MPI_Finalize();
  return 0;
}
