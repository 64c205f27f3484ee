/* loadgen: StreamHouse's load generator, in C so that the client is not the limit.
 *
 *   loadgen produce  --bootstrap H:P | --mock  --topic T [options]   librdkafka producer
 *   loadgen consume  --bootstrap H:P | --mock  --topic T [options]   librdkafka consumer
 *   loadgen many     --bootstrap H:P | --mock  --topic T [options]   raw Produce v3 over many
 *                                                                     sockets, one thread, epoll
 *
 * --mock starts librdkafka's in-process mock cluster (one broker that stores next to nothing)
 * and runs the same workload against it: the ceiling of this client on this machine.
 * Every mode prints one JSON object on stdout; errors go to stderr with exit code 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define PURGE_SETTLE_MS 1000
#define POLL_EVERY_RECORDS 1000
#define STATS_INTERVAL_MS 100
#define STATS_SETTLE_MS 250
#define CONSUME_BATCH_RECORDS 10000
#define CONSUME_POLL_MS 100
#define METADATA_TIMEOUT_MS 10000
#define MANY_IN_FLIGHT_MAX 64
#define MANY_BUFFER_BYTES 8192
#define MANY_EPOLL_EVENTS 256
#define PRODUCE_TIMEOUT_MS 30000
#define ERRSTR_BYTES 512
#define LOG_LEVEL_SHOWN 4 /* syslog's warning */

/* ---- options ------------------------------------------------------------------------------ */

typedef struct {
    const char *mode;
    const char *bootstrap; /* NULL with --mock */
    int mock;
    const char *topic;
    int partitions;         /* produce/many: records go round-robin over 0..partitions-1 */
    long records;           /* produce: most records sent; consume: records to read */
    int value_bytes;
    double seconds;         /* produce: stop sending after this long; many: measured time */
    const char *acks;
    int linger_ms;
    int batch_bytes;
    int batch_records;
    int in_flight_max;
    long outstanding_max;   /* produce: most records sent and not yet answered */
    double drain_s;         /* produce/many: longest wait for answers once sending stopped */
    double idle_s;          /* consume: stop after this long without a record */
    int connections;        /* many */
    double rate_per_connection; /* many: requests per second per connection */
    double warmup_s;        /* many: latencies of requests scheduled earlier are not counted */
} options_t;

static void die(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n");
    va_end(args);
    exit(2);
}

static void set_option(options_t *o, const char *name, const char *value) {
    if (!strcmp(name, "--bootstrap")) o->bootstrap = value;
    else if (!strcmp(name, "--topic")) o->topic = value;
    else if (!strcmp(name, "--partitions")) o->partitions = atoi(value);
    else if (!strcmp(name, "--records")) o->records = atol(value);
    else if (!strcmp(name, "--value-bytes")) o->value_bytes = atoi(value);
    else if (!strcmp(name, "--seconds")) o->seconds = atof(value);
    else if (!strcmp(name, "--acks")) o->acks = value;
    else if (!strcmp(name, "--linger-ms")) o->linger_ms = atoi(value);
    else if (!strcmp(name, "--batch-bytes")) o->batch_bytes = atoi(value);
    else if (!strcmp(name, "--batch-records")) o->batch_records = atoi(value);
    else if (!strcmp(name, "--in-flight-max")) o->in_flight_max = atoi(value);
    else if (!strcmp(name, "--outstanding-max")) o->outstanding_max = atol(value);
    else if (!strcmp(name, "--drain-s")) o->drain_s = atof(value);
    else if (!strcmp(name, "--idle-s")) o->idle_s = atof(value);
    else if (!strcmp(name, "--connections")) o->connections = atoi(value);
    else if (!strcmp(name, "--rate")) o->rate_per_connection = atof(value);
    else if (!strcmp(name, "--warmup-s")) o->warmup_s = atof(value);
    else die("unknown option %s", name);
}

static options_t parse_options(int argc, char **argv) {
    options_t o = {
        .partitions = 8, .records = 1000000, .value_bytes = 100, .seconds = 10.0,
        .acks = "1", .linger_ms = 5, .batch_bytes = 1000000, .batch_records = 1000000,
        .in_flight_max = 1000000, .outstanding_max = 1000000, .drain_s = 10.0, .idle_s = 3.0, .connections = 1000,
        .rate_per_connection = 10.0, .warmup_s = 1.0,
    };
    if (argc < 2) die("usage: loadgen produce|consume|many --bootstrap H:P|--mock --topic T ...");
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--mock")) { o.mock = 1; continue; }
        if (i + 1 >= argc) die("option %s needs a value", argv[i]);
        set_option(&o, argv[i], argv[i + 1]);
        i++;
    }
    if (!o.topic) die("--topic is required");
    if (!o.bootstrap && !o.mock) die("one of --bootstrap or --mock is required");
    if (o.partitions < 1 || o.value_bytes < 0 || o.records < 1) die("bad sizes");
    return o;
}

/* ---- time and latencies ------------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* p50, p99 and max of `n` latencies in ms, as JSON members (sorts `values`). */
static void print_latencies(float *values, long n) {
    if (n == 0) {
        printf("\"p50_ms\": null, \"p99_ms\": null, \"max_ms\": null");
        return;
    }
    qsort(values, (size_t)n, sizeof(float), cmp_float);
    printf("\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f", values[n / 2],
           values[(long)((double)n * 0.99) < n ? (long)((double)n * 0.99) : n - 1],
           values[n - 1]);
}

/* ---- librdkafka helpers ------------------------------------------------------------------- */

/* librdkafka's warnings and errors, on stderr; its notices (purges at exit) are not news. */
static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *text) {
    (void)rk;
    if (level <= LOG_LEVEL_SHOWN) fprintf(stderr, "loadgen: librdkafka %s: %s\n", facility, text);
}

static void conf_set(rd_kafka_conf_t *conf, const char *name, const char *value) {
    char errstr[ERRSTR_BYTES];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK)
        die("config %s=%s: %s", name, value, errstr);
}

static void conf_set_int(rd_kafka_conf_t *conf, const char *name, long value) {
    char text[32];
    snprintf(text, sizeof text, "%ld", value);
    conf_set(conf, name, text);
}

static rd_kafka_t *new_handle(rd_kafka_type_t type, rd_kafka_conf_t *conf) {
    char errstr[ERRSTR_BYTES];
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
    if (!rk) die("rd_kafka_new: %s", errstr);
    return rk;
}

/* The mock cluster lives in its own handle, which must outlive every client of it. */
static rd_kafka_t *mock_owner;

static const char *start_mock(const options_t *o) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "test.mock.num.brokers", "1");
    mock_owner = new_handle(RD_KAFKA_PRODUCER, conf);
    rd_kafka_mock_cluster_t *cluster = rd_kafka_handle_mock_cluster(mock_owner);
    if (!cluster) die("librdkafka did not start a mock cluster");
    if (rd_kafka_mock_topic_create(cluster, o->topic, o->partitions, 1))
        die("mock cluster: cannot create topic %s", o->topic);
    return rd_kafka_mock_cluster_bootstraps(cluster);
}

static const char *bootstrap_of(const options_t *o) {
    return o->mock ? start_mock(o) : o->bootstrap;
}

/* ---- produce ------------------------------------------------------------------------------ */

typedef struct {
    double start;
    double *sent_at;     /* per record index */
    float *latency_ms;   /* in delivery order */
    long delivered;
    long failed;
    long purged;         /* still unanswered when the drain time ran out */
    double last_delivery;
    long requests;       /* librdkafka's count of requests sent (last statistics seen) */
    int stats_seen;
} produce_run_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    produce_run_t *run = opaque;
    double now = now_s();
    long index = (long)(intptr_t)msg->_private;
    if (msg->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || msg->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
        run->purged++;
        return;
    }
    if (msg->err) {
        run->failed++;
        return;
    }
    run->latency_ms[run->delivered++] = (float)((now - run->sent_at[index]) * 1000.0);
    run->last_delivery = now;
}

static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    (void)rk;
    (void)len;
    produce_run_t *run = opaque;
    const char *tx = strstr(json, "\"tx\":"); /* the first is the client's total */
    if (tx) run->requests = atol(tx + 5);
    run->stats_seen++;
    return 0;
}

static rd_kafka_t *new_producer(const options_t *o, const char *bootstrap, produce_run_t *run) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", bootstrap);
    conf_set(conf, "acks", o->acks);
    conf_set_int(conf, "linger.ms", o->linger_ms);
    conf_set_int(conf, "batch.size", o->batch_bytes);
    conf_set_int(conf, "batch.num.messages", o->batch_records);
    conf_set_int(conf, "max.in.flight.requests.per.connection", o->in_flight_max);
    conf_set(conf, "queue.buffering.max.messages", "2000000");
    conf_set_int(conf, "statistics.interval.ms", STATS_INTERVAL_MS);
    rd_kafka_conf_set_opaque(conf, run);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    return new_handle(RD_KAFKA_PRODUCER, conf);
}

static void send_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int partition, char *value,
                     size_t value_bytes, long index) {
    while (rd_kafka_produce(rkt, partition, 0, value, value_bytes, NULL, 0,
                            (void *)(intptr_t)index) == -1) {
        rd_kafka_resp_err_t err = rd_kafka_last_error();
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) die("produce: %s", rd_kafka_err2str(err));
        rd_kafka_poll(rk, 1);
    }
}

/* Send up to o->records records (or for o->seconds), then wait for every delivery. */
static long produce_records(const options_t *o, rd_kafka_t *rk, produce_run_t *run) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    char *value = malloc((size_t)o->value_bytes + 1);
    memset(value, 'v', (size_t)o->value_bytes);
    long sent = 0;
    double stop_at = run->start + o->seconds;
    for (; sent < o->records; sent++) {
        double now = now_s();
        if (sent % POLL_EVERY_RECORDS == 0) {
            if (now >= stop_at) break;
            rd_kafka_poll(rk, 0);
        }
        while (sent - run->delivered - run->failed >= o->outstanding_max) rd_kafka_poll(rk, 1);
        run->sent_at[sent] = now_s();
        send_one(rk, rkt, (int)(sent % o->partitions), value, (size_t)o->value_bytes, sent);
    }
    if (rd_kafka_flush(rk, (int)(o->drain_s * 1000)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(rk, PURGE_SETTLE_MS);
    }
    rd_kafka_topic_destroy(rkt);
    free(value);
    return sent;
}

static int run_produce(const options_t *o) {
    const char *bootstrap = bootstrap_of(o);
    produce_run_t run = {0};
    run.sent_at = malloc(sizeof(double) * (size_t)o->records);
    run.latency_ms = malloc(sizeof(float) * (size_t)o->records);
    if (!run.sent_at || !run.latency_ms) die("out of memory for %ld records", o->records);
    rd_kafka_t *rk = new_producer(o, bootstrap, &run);
    run.start = now_s();
    long sent = produce_records(o, rk, &run);
    int seen = run.stats_seen;
    for (double until = now_s() + STATS_SETTLE_MS / 1000.0; now_s() < until && run.stats_seen <= seen + 1;)
        rd_kafka_poll(rk, 10);
    double elapsed = run.last_delivery > run.start ? run.last_delivery - run.start : 1e-9;
    printf("{\"mode\": \"produce\", \"mock\": %s, \"acks\": \"%s\", \"partitions\": %d, "
           "\"value_bytes\": %d, \"linger_ms\": %d, \"batch_bytes\": %d, \"batch_records\": %d, "
           "\"sent\": %ld, \"delivered\": %ld, \"failed\": %ld, \"undelivered\": %ld, "
           "\"seconds\": %.3f, "
           "\"records_per_s\": %.1f, \"mb_per_s\": %.2f, \"requests\": %ld, "
           "\"requests_per_s\": %.1f, \"outstanding_max\": %ld, ",
           o->mock ? "true" : "false", o->acks, o->partitions, o->value_bytes, o->linger_ms,
           o->batch_bytes, o->batch_records, sent, run.delivered, run.failed,
           sent - run.delivered - run.failed, elapsed,
           (double)run.delivered / elapsed,
           (double)run.delivered * o->value_bytes / 1e6 / elapsed, run.requests,
           (double)run.requests / elapsed, o->outstanding_max);
    print_latencies(run.latency_ms, run.delivered);
    printf("}\n");
    rd_kafka_destroy(rk);
    free(run.sent_at);
    free(run.latency_ms);
    return run.failed == 0 && run.delivered == sent ? 0 : 1;
}

/* ---- consume ------------------------------------------------------------------------------ */

static int partition_count(rd_kafka_t *rk, const char *topic) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
    if (err) die("metadata for %s: %s", topic, rd_kafka_err2str(err));
    int count = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (count < 1) die("topic %s has no partitions", topic);
    return count;
}

static rd_kafka_t *new_consumer(const char *bootstrap) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    conf_set(conf, "bootstrap.servers", bootstrap);
    conf_set(conf, "group.id", "loadgen");
    conf_set(conf, "enable.auto.commit", "false");
    conf_set(conf, "fetch.max.bytes", "52428800");
    return new_handle(RD_KAFKA_CONSUMER, conf);
}

static void assign_from_beginning(rd_kafka_t *rk, const char *topic, int partitions) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; p++)
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, list);
    if (err) die("assign: %s", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(list);
}

/* The mock stores only what it is sent in this process: fill it first, big batches. */
static void fill_mock(const options_t *o, const char *bootstrap) {
    options_t fill = *o;
    fill.linger_ms = 5;
    fill.batch_bytes = 1000000;
    fill.batch_records = 1000000;
    fill.seconds = 1e9;
    produce_run_t run = {0};
    run.sent_at = malloc(sizeof(double) * (size_t)o->records);
    run.latency_ms = malloc(sizeof(float) * (size_t)o->records);
    rd_kafka_t *rk = new_producer(&fill, bootstrap, &run);
    run.start = now_s();
    produce_records(&fill, rk, &run);
    rd_kafka_destroy(rk);
    free(run.sent_at);
    free(run.latency_ms);
}

static int run_consume(const options_t *o) {
    const char *bootstrap = bootstrap_of(o);
    if (o->mock) fill_mock(o, bootstrap);
    rd_kafka_t *rk = new_consumer(bootstrap);
    rd_kafka_poll_set_consumer(rk);
    int partitions = partition_count(rk, o->topic);
    rd_kafka_message_t **batch = malloc(sizeof(*batch) * CONSUME_BATCH_RECORDS);
    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(rk);
    long seen = 0, errors = 0;
    double start = now_s(), first = 0, last = start;
    assign_from_beginning(rk, o->topic, partitions);
    /* Up to o->seconds for the first record (a restarted agent first takes its partitions
     * back), then up to o->idle_s between records. */
    while (seen < o->records && (first == 0 || now_s() - last < o->idle_s) &&
           now_s() - start < o->seconds) {
        ssize_t n = rd_kafka_consume_batch_queue(queue, CONSUME_POLL_MS, batch,
                                                 CONSUME_BATCH_RECORDS);
        for (ssize_t i = 0; i < n; i++) {
            if (batch[i]->err) errors++;
            else seen++;
            rd_kafka_message_destroy(batch[i]);
        }
        if (n > 0) last = now_s();
        if (n > 0 && first == 0) first = last;
    }
    /* The rate runs from the first record to the last: connecting and the first fetch's
     * round trip are reported apart, as first_record_s. */
    double elapsed = first > 0 && last > first ? last - first : 1e-9;
    printf("{\"mode\": \"consume\", \"mock\": %s, \"partitions\": %d, \"records\": %ld, "
           "\"errors\": %ld, \"first_record_s\": %.3f, \"seconds\": %.3f, "
           "\"records_per_s\": %.1f}\n",
           o->mock ? "true" : "false", partitions, seen, errors, first > 0 ? first - start : -1.0,
           elapsed, (double)seen / elapsed);
    rd_kafka_queue_destroy(queue);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(batch);
    return 0;
}

/* ---- many: raw Produce v3 requests, one record each, over many connections ---------------- */

static uint32_t crc_table[256];

static void crc32c_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32c(const uint8_t *data, size_t len) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

typedef struct {
    uint8_t *start, *at;
} writer_t;

static void put8(writer_t *w, uint8_t v) { *w->at++ = v; }
static void put16(writer_t *w, uint16_t v) { put8(w, v >> 8); put8(w, v & 0xFF); }
static void put32(writer_t *w, uint32_t v) { put16(w, v >> 16); put16(w, v & 0xFFFF); }
static void put64(writer_t *w, uint64_t v) { put32(w, v >> 32); put32(w, v & 0xFFFFFFFFu); }

static void put_varint(writer_t *w, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) { put8(w, (uint8_t)(z | 0x80)); z >>= 7; }
    put8(w, (uint8_t)z);
}

static void put_string(writer_t *w, const char *s) {
    size_t len = strlen(s);
    put16(w, (uint16_t)len);
    memcpy(w->at, s, len);
    w->at += len;
}

static void patch32(uint8_t *at, uint32_t v) {
    at[0] = v >> 24; at[1] = (v >> 16) & 0xFF; at[2] = (v >> 8) & 0xFF; at[3] = v & 0xFF;
}

/* A RecordBatch v2 holding one record with a `value_bytes` value and no key. */
static void put_batch(writer_t *w, int value_bytes, int64_t timestamp_ms) {
    uint8_t record[64 + MANY_BUFFER_BYTES / 2];
    writer_t r = {record, record};
    put8(&r, 0);          /* attributes */
    put_varint(&r, 0);    /* timestamp delta */
    put_varint(&r, 0);    /* offset delta */
    put_varint(&r, -1);   /* null key */
    put_varint(&r, value_bytes);
    memset(r.at, 'v', (size_t)value_bytes);
    r.at += value_bytes;
    put_varint(&r, 0);    /* no headers */
    put64(w, 0);          /* base offset */
    uint8_t *length_at = w->at;
    put32(w, 0);          /* batch length, patched below */
    put32(w, 0xFFFFFFFFu); /* partition leader epoch: -1 */
    put8(w, 2);           /* magic */
    uint8_t *crc_at = w->at;
    put32(w, 0);
    uint8_t *crc_from = w->at;
    put16(w, 0);          /* attributes: no compression */
    put32(w, 0);          /* last offset delta */
    put64(w, (uint64_t)timestamp_ms);
    put64(w, (uint64_t)timestamp_ms);
    put64(w, UINT64_MAX); /* producer id -1 */
    put16(w, 0xFFFF);     /* producer epoch -1 */
    put32(w, 0xFFFFFFFFu); /* base sequence -1 */
    put32(w, 1);          /* record count */
    put_varint(w, r.at - record);
    memcpy(w->at, record, (size_t)(r.at - record));
    w->at += r.at - record;
    patch32(length_at, (uint32_t)(w->at - length_at - 4));
    patch32(crc_at, crc32c(crc_from, (size_t)(w->at - crc_from)));
}

/* A size-prefixed Produce v3 request for one record on one partition; returns its length. */
static size_t produce_request(uint8_t *buf, const options_t *o, int acks, int32_t correlation,
                              int partition) {
    writer_t w = {buf, buf};
    put32(&w, 0);                      /* size, patched below */
    put16(&w, 0);                      /* api key: Produce */
    put16(&w, 3);                      /* api version */
    put32(&w, (uint32_t)correlation);
    put_string(&w, "loadgen");
    put16(&w, 0xFFFF);                 /* no transactional id */
    put16(&w, (uint16_t)acks);
    put32(&w, PRODUCE_TIMEOUT_MS);
    put32(&w, 1);                      /* one topic */
    put_string(&w, o->topic);
    put32(&w, 1);                      /* one partition */
    put32(&w, (uint32_t)partition);
    uint8_t *records_at = w.at;
    put32(&w, 0);                      /* records size, patched below */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    put_batch(&w, o->value_bytes, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    patch32(records_at, (uint32_t)(w.at - records_at - 4));
    patch32(buf, (uint32_t)(w.at - buf - 4));
    return (size_t)(w.at - buf);
}

typedef struct {
    int fd;
    int32_t next_correlation;
    double scheduled[MANY_IN_FLIGHT_MAX]; /* ring of requests awaiting an answer */
    int head, count;
    uint8_t in[MANY_BUFFER_BYTES];
    size_t in_len;
    uint8_t out[MANY_BUFFER_BYTES];
    size_t out_len;
} conn_t;

typedef struct {
    const options_t *o;
    int acks;
    conn_t *conns;
    int epoll_fd;
    double measure_from;
    float *latency_ms;
    long latency_cap, latencies;
    long sent, answered, errors, skipped;
    int first_error; /* the Kafka error code of the first failed answer */
} many_run_t;

static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int connect_to(const char *bootstrap) {
    char host[256];
    snprintf(host, sizeof host, "%s", bootstrap);
    char *colon = strrchr(host, ':');
    if (!colon) die("bootstrap %s has no port", bootstrap);
    *colon = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *addr;
    if (getaddrinfo(host, colon + 1, &hints, &addr)) die("cannot resolve %s", bootstrap);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket: %s (raise the open-file limit?)", strerror(errno));
    if (connect(fd, addr->ai_addr, addr->ai_addrlen)) die("connect %s: %s", bootstrap, strerror(errno));
    freeaddrinfo(addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void read_fully(int fd, uint8_t *buf, size_t len) {
    for (size_t got = 0; got < len;) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0) die("handshake: connection closed (%s)", n ? strerror(errno) : "EOF");
        got += (size_t)n;
    }
}

/* ApiVersions v0, answered, before the next connection opens: a broker with a short accept
 * backlog (the mock's) never drops a SYN, and every connection is served before the run. */
static void handshake(int fd) {
    uint8_t frame[64], answer[MANY_BUFFER_BYTES];
    writer_t w = {frame, frame};
    put32(&w, 0);
    put16(&w, 18); /* api key: ApiVersions */
    put16(&w, 0);
    put32(&w, 0);  /* correlation id */
    put_string(&w, "loadgen");
    patch32(frame, (uint32_t)(w.at - frame - 4));
    if (send(fd, frame, (size_t)(w.at - frame), MSG_NOSIGNAL) != w.at - frame)
        die("handshake: send: %s", strerror(errno));
    read_fully(fd, answer, 4);
    uint32_t size = get32(answer);
    if (size > sizeof answer) die("handshake: a %u-byte ApiVersions answer", size);
    read_fully(fd, answer, size);
}

static void watch(many_run_t *run, int index, int want_write) {
    struct epoll_event ev = {.events = EPOLLIN | (want_write ? EPOLLOUT : 0), .data.u32 = (uint32_t)index};
    if (epoll_ctl(run->epoll_fd, EPOLL_CTL_MOD, run->conns[index].fd, &ev))
        die("epoll_ctl: %s", strerror(errno));
}

static void flush_out(many_run_t *run, int index) {
    conn_t *c = &run->conns[index];
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0) die("send: %s", strerror(errno));
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    watch(run, index, c->out_len > 0);
}

static void send_request(many_run_t *run, int index, double scheduled) {
    conn_t *c = &run->conns[index];
    uint8_t frame[MANY_BUFFER_BYTES / 2];
    if ((run->acks != 0 && c->count == MANY_IN_FLIGHT_MAX)) {
        run->skipped++;
        return;
    }
    size_t len = produce_request(frame, run->o, run->acks, c->next_correlation++,
                                 index % run->o->partitions);
    if (c->out_len + len > sizeof c->out) {
        run->skipped++;
        return;
    }
    memcpy(c->out + c->out_len, frame, len);
    c->out_len += len;
    run->sent++;
    if (run->acks != 0) {
        c->scheduled[(c->head + c->count) % MANY_IN_FLIGHT_MAX] = scheduled;
        c->count++;
    }
    flush_out(run, index);
}

/* One Produce v3 response: count it, and its latency from the time it was scheduled. */
static void on_response(many_run_t *run, conn_t *c, const uint8_t *body, size_t len) {
    if (c->count == 0) die("an answer to no request");
    double scheduled = c->scheduled[c->head];
    c->head = (c->head + 1) % MANY_IN_FLIGHT_MAX;
    c->count--;
    run->answered++;
    /* correlation id, topic count, topic name, partition count, partition, error code */
    size_t topic_len = len >= 10 ? (size_t)(body[8] << 8 | body[9]) : 0;
    size_t error_at = 4 + 4 + 2 + topic_len + 4 + 4;
    int error = len < error_at + 2 ? -1 : (int16_t)(body[error_at] << 8 | body[error_at + 1]);
    if (error != 0 && run->errors++ == 0) run->first_error = error;
    if (scheduled >= run->measure_from && run->latencies < run->latency_cap)
        run->latency_ms[run->latencies++] = (float)((now_s() - scheduled) * 1000.0);
}

static void read_responses(many_run_t *run, int index) {
    conn_t *c = &run->conns[index];
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) die("connection %d closed by the broker (%s)", index, n ? strerror(errno) : "EOF");
        c->in_len += (size_t)n;
        size_t at = 0;
        while (c->in_len - at >= 4 && c->in_len - at >= 4 + get32(c->in + at)) {
            size_t size = get32(c->in + at);
            on_response(run, c, c->in + at + 4, size);
            at += 4 + size;
        }
        memmove(c->in, c->in + at, c->in_len - at);
        c->in_len -= at;
        if (c->in_len == sizeof c->in) die("a response larger than %d bytes", MANY_BUFFER_BYTES);
    }
}

static void open_connections(many_run_t *run, const char *bootstrap) {
    run->epoll_fd = epoll_create1(0);
    for (int i = 0; i < run->o->connections; i++) {
        int fd = connect_to(bootstrap);
        handshake(fd);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        run->conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(run->epoll_fd, EPOLL_CTL_ADD, run->conns[i].fd, &ev))
            die("epoll_ctl: %s", strerror(errno));
    }
}

static void serve_events(many_run_t *run, int timeout_ms) {
    struct epoll_event events[MANY_EPOLL_EVENTS];
    int n = epoll_wait(run->epoll_fd, events, MANY_EPOLL_EVENTS, timeout_ms);
    for (int i = 0; i < n; i++) {
        int index = (int)events[i].data.u32;
        if (events[i].events & EPOLLOUT) flush_out(run, index);
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_responses(run, index);
    }
}

/* Request j goes to connection j % C at start + j / (C * rate): each connection sends `rate`
 * requests a second, the connections evenly staggered. Latency counts from the schedule, so a
 * slow answer delays nothing else (no coordinated omission). */
static void drive(many_run_t *run, double start, double seconds) {
    double gap = 1.0 / (run->o->connections * run->o->rate_per_connection);
    long total = (long)(seconds / gap), next = 0;
    while (next < total) {
        double now = now_s();
        while (next < total && start + (double)next * gap <= now) {
            send_request(run, (int)(next % run->o->connections), start + (double)next * gap);
            next++;
        }
        /* at least a millisecond: due requests go out together, the thread never spins */
        double wait_ms = (start + (double)next * gap - now_s()) * 1000.0;
        serve_events(run, wait_ms > 1.0 ? (int)wait_ms : 1);
    }
}

static long in_flight(const many_run_t *run) {
    long total = 0;
    for (int i = 0; i < run->o->connections; i++) total += run->conns[i].count;
    return total;
}

/* Requests never answered count too, each at least as late as now: without them an agent that
 * answers little would show the latency of the few it did. Returns how many were counted. */
static long count_unanswered(many_run_t *run) {
    long counted = 0;
    double now = now_s();
    for (int i = 0; i < run->o->connections; i++) {
        conn_t *c = &run->conns[i];
        for (int k = 0; k < c->count; k++) {
            double scheduled = c->scheduled[(c->head + k) % MANY_IN_FLIGHT_MAX];
            if (scheduled < run->measure_from || run->latencies >= run->latency_cap) continue;
            run->latency_ms[run->latencies++] = (float)((now - scheduled) * 1000.0);
            counted++;
        }
    }
    return counted;
}

static int run_many(const options_t *o) {
    const char *bootstrap = bootstrap_of(o);
    crc32c_init();
    many_run_t run = {.o = o, .acks = !strcmp(o->acks, "all") ? -1 : atoi(o->acks)};
    run.conns = calloc((size_t)o->connections, sizeof(conn_t));
    run.latency_cap = (long)(o->connections * o->rate_per_connection * (o->seconds + 1)) + 1;
    run.latency_ms = malloc(sizeof(float) * (size_t)run.latency_cap);
    double opened = now_s();
    open_connections(&run, bootstrap);
    double start = now_s();
    run.measure_from = start + o->warmup_s;
    drive(&run, start, o->warmup_s + o->seconds);
    double drained_by = now_s() + o->drain_s;
    while (in_flight(&run) > 0 && now_s() < drained_by) serve_events(&run, 100);
    double elapsed = now_s() - start;
    long unanswered_counted = count_unanswered(&run);
    struct rusage usage;
    getrusage(RUSAGE_THREAD, &usage); /* the generator's own thread, not the mock's */
    double cpu_s = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
                   (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
    printf("{\"mode\": \"many\", \"mock\": %s, \"acks\": \"%s\", \"connections\": %d, "
           "\"rate_per_connection\": %.1f, \"connect_s\": %.3f, \"seconds\": %.3f, "
           "\"sent\": %ld, \"answered\": %ld, \"errors\": %ld, \"skipped\": %ld, "
           "\"unanswered\": %ld, \"requests_per_s\": %.1f, \"generator_cpu_s\": %.3f, "
           "\"latencies_unanswered\": %ld, \"first_error_code\": %d, ",
           o->mock ? "true" : "false", o->acks, o->connections, o->rate_per_connection,
           start - opened, elapsed, run.sent, run.answered, run.errors, run.skipped,
           in_flight(&run), (double)run.answered / elapsed, cpu_s, unanswered_counted,
           run.first_error);
    print_latencies(run.latency_ms, run.latencies);
    printf("}\n");
    int code = run.errors == 0 && in_flight(&run) == 0 ? 0 : 1;
    for (int i = 0; i < o->connections; i++) close(run.conns[i].fd);
    free(run.conns);
    free(run.latency_ms);
    return code;
}

int main(int argc, char **argv) {
    options_t o = parse_options(argc, argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int code;
    if (!strcmp(o.mode, "produce")) code = run_produce(&o);
    else if (!strcmp(o.mode, "consume")) code = run_consume(&o);
    else if (!strcmp(o.mode, "many")) code = run_many(&o);
    else die("unknown mode %s", o.mode);
    if (mock_owner) rd_kafka_destroy(mock_owner);
    return code;
}
