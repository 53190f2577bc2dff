/*
 * faiss_shim.cpp - the part of the FAISS C API that docent uses, over the C++
 * libfaiss.
 *
 * Why this file exists: Debian's libfaiss-dev ships the C API headers
 * (/usr/include/faiss/c_api/) but no compiled libfaiss_c, only the C++ library.
 * index/vindex.c is written against the C API alone, so where no libfaiss_c is
 * installed the Makefile compiles this file (HAVE_FAISS_C) and links the C++
 * libfaiss instead.  Where a real libfaiss_c exists, this file is not built.
 *
 * Rules for this file:
 *   - Every function has exactly the signature declared in the c_api headers,
 *     which are included here so the compiler checks each definition against
 *     its declaration.  Do not add functions vindex.c does not call.
 *   - No C++ exception crosses into C.  Each fallible function catches
 *     everything and follows the C API's convention: 0 on success, otherwise
 *     a FaissErrorCode (FAISS_EXCEPT for faiss::FaissException, STD_EXCEPT
 *     for other std::exception such as std::bad_alloc, UNKNOWN_EXCEPT for the
 *     rest), with the text available from faiss_get_last_error() on the same
 *     thread until the next failure.
 *   - Opaque C handles are the C++ objects themselves (a FaissIndex* is a
 *     faiss::Index*), as in the real C API, so the pointer casts below are the
 *     whole translation.
 */
#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/faiss_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <exception>
#include <string>

namespace {

/* The text of this thread's last failure; empty until one happens. */
thread_local std::string last_error;

/* Run f, turning any exception into the C API's error code and last_error. */
template <class F>
int guarded(F &&f) noexcept
{
    try {
        f();
        return OK;
    } catch (const faiss::FaissException &e) {
        last_error = e.what();
        return FAISS_EXCEPT;
    } catch (const std::exception &e) {
        last_error = e.what();
        return STD_EXCEPT;
    } catch (...) {
        last_error = "unknown exception";
        return UNKNOWN_EXCEPT;
    }
}

faiss::Index *cpp(FaissIndex *p) { return reinterpret_cast<faiss::Index *>(p); }
const faiss::Index *cpp(const FaissIndex *p) { return reinterpret_cast<const faiss::Index *>(p); }
FaissIndex *c_index(faiss::Index *p) { return reinterpret_cast<FaissIndex *>(p); }

} // namespace

extern "C" {

/* ---- errors --------------------------------------------------------------- */

const char *faiss_get_last_error()
{
    return last_error.empty() ? nullptr : last_error.c_str();
}

/* ---- Index ---------------------------------------------------------------- */

int faiss_index_factory(FaissIndex **p_index, int d, const char *description,
                        FaissMetricType metric)
{
    return guarded([&] {
        *p_index = nullptr;
        *p_index = c_index(faiss::index_factory(d, description,
                                                static_cast<faiss::MetricType>(metric)));
    });
}

void faiss_Index_free(FaissIndex *obj)
{
    delete cpp(obj);
}

int faiss_Index_d(const FaissIndex *obj)
{
    return cpp(obj)->d;
}

idx_t faiss_Index_ntotal(const FaissIndex *obj)
{
    return cpp(obj)->ntotal;
}

FaissMetricType faiss_Index_metric_type(const FaissIndex *obj)
{
    return static_cast<FaissMetricType>(cpp(obj)->metric_type);
}

int faiss_Index_add_with_ids(FaissIndex *index, idx_t n, const float *x, const idx_t *xids)
{
    return guarded([&] { cpp(index)->add_with_ids(n, x, xids); });
}

int faiss_Index_search(const FaissIndex *index, idx_t n, const float *x, idx_t k,
                       float *distances, idx_t *labels)
{
    return guarded([&] { cpp(index)->search(n, x, k, distances, labels); });
}

int faiss_Index_remove_ids(FaissIndex *index, const FaissIDSelector *sel, size_t *n_removed)
{
    return guarded([&] {
        size_t n = cpp(index)->remove_ids(*reinterpret_cast<const faiss::IDSelector *>(sel));
        if (n_removed) *n_removed = n;
    });
}

/* ---- IDSelector ----------------------------------------------------------- */

int faiss_IDSelectorBatch_new(FaissIDSelectorBatch **p_sel, size_t n, const idx_t *indices)
{
    return guarded([&] {
        *p_sel = nullptr;
        *p_sel = reinterpret_cast<FaissIDSelectorBatch *>(
                static_cast<faiss::IDSelector *>(new faiss::IDSelectorBatch(n, indices)));
    });
}

void faiss_IDSelector_free(FaissIDSelector *obj)
{
    delete reinterpret_cast<faiss::IDSelector *>(obj);
}

/* ---- IndexIDMap2 / IndexFlat ---------------------------------------------- */

FaissIndexIDMap2 *faiss_IndexIDMap2_cast(FaissIndex *index)
{
    return reinterpret_cast<FaissIndexIDMap2 *>(
            static_cast<faiss::Index *>(dynamic_cast<faiss::IndexIDMap2 *>(cpp(index))));
}

void faiss_IndexIDMap2_id_map(FaissIndexIDMap2 *index, idx_t **p_id_map, size_t *p_size)
{
    auto *m = static_cast<faiss::IndexIDMap2 *>(cpp(reinterpret_cast<FaissIndex *>(index)));
    *p_id_map = m->id_map.data();
    *p_size = m->id_map.size();
}

FaissIndex *faiss_IndexIDMap2_sub_index(FaissIndexIDMap2 *index)
{
    auto *m = static_cast<faiss::IndexIDMap2 *>(cpp(reinterpret_cast<FaissIndex *>(index)));
    return c_index(m->index);
}

FaissIndexFlat *faiss_IndexFlat_cast(FaissIndex *index)
{
    return reinterpret_cast<FaissIndexFlat *>(
            static_cast<faiss::Index *>(dynamic_cast<faiss::IndexFlat *>(cpp(index))));
}

/* ---- serialisation (FILE*) ------------------------------------------------ */

int faiss_write_index(const FaissIndex *idx, FILE *f)
{
    return guarded([&] { faiss::write_index(cpp(idx), f); });
}

int faiss_read_index(FILE *f, int io_flags, FaissIndex **p_out)
{
    return guarded([&] {
        *p_out = nullptr;
        *p_out = c_index(faiss::read_index(f, io_flags));
    });
}

/* ---- ParameterSpace (efSearch) -------------------------------------------- */

int faiss_ParameterSpace_new(FaissParameterSpace **space)
{
    return guarded([&] {
        *space = nullptr;
        *space = reinterpret_cast<FaissParameterSpace *>(new faiss::ParameterSpace());
    });
}

void faiss_ParameterSpace_free(FaissParameterSpace *obj)
{
    delete reinterpret_cast<faiss::ParameterSpace *>(obj);
}

int faiss_ParameterSpace_set_index_parameter(const FaissParameterSpace *space,
                                             FaissIndex *index, const char *name,
                                             double value)
{
    return guarded([&] {
        reinterpret_cast<const faiss::ParameterSpace *>(space)->set_index_parameter(
                cpp(index), name, value);
    });
}

} // extern "C"
