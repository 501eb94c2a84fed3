// Package controller is netplug's reconciler. Pod events of this node feed two rate-limited
// workqueues (plugs, and releases of terminating, completed and deleted pods, so that a release
// never waits behind a slow plug), and each worker reconciles one pod in four phases: observe
// (pod, sandbox, checkpoints, status), plan (pure, pkg/attachment), execute (each step through
// pkg/executor) and commit (one pod write, events, metrics). The controller decides and reports;
// the executor acts.
package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	nadv1 "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/apis/k8s.cni.cncf.io/v1"
	nadclient "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/clientset/versioned"
	nadinformers "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/informers/externalversions"
	nadlisters "github.com/k8snetworkplumbingwg/network-attachment-definition-client/pkg/client/listers/k8s.cni.cncf.io/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/netplug/netplug/pkg/attachment"
	"github.com/netplug/netplug/pkg/keylock"
	"github.com/netplug/netplug/pkg/metrics"
)

// Options tune the controller; see pkg/config for the user-facing keys.
type Options struct {
	NodeName           string
	Workers            int
	ResyncPeriod       time.Duration
	NamespaceIsolation bool
	// IsGlobalNamespace reports whether any pod may use NADs of ns under namespace isolation.
	IsGlobalNamespace func(ns string) bool
	// RetryBase and RetryMax bound the per-pod exponential backoff after a failure.
	RetryBase, RetryMax time.Duration
	// DrainTimeout bounds how long a reconcile under way may go on once the controller is
	// asked to stop (default 15 s, within the pod's termination grace period).
	DrainTimeout time.Duration
	// MaxNetworksPerPod caps the elements of one pod's selection (default 32).
	MaxNetworksPerPod int
	// ReconcileBudget bounds the time in which a reconcile starts steps (default 2 min): what
	// is left is requeued, so one pod of slow plugins cannot hold a worker indefinitely.
	ReconcileBudget time.Duration
	// ReleaseWorkers reconcile terminating, completed and deleted pods (default 2).
	ReleaseWorkers int
	// FinalizerTimeout is how long after its deletion deadline a pod keeps netplug's finalizer
	// while its release fails (default 5 min); then the finalizer goes with a Warning.
	FinalizerTimeout time.Duration
	// StepsInParallel bounds the steps of one pod that run at once (default 4).
	StepsInParallel int
	// CreationDir keeps what pods asked Multus for at creation across restarts ("" keeps it in
	// memory only).
	CreationDir string
	// Now is the clock (tests).
	Now func() time.Time
	// Devices are the device pools (nil: none configured).
	Devices Devices
}

func (o *Options) defaults() {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.ReleaseWorkers < 1 {
		o.ReleaseWorkers = 2
	}
	if o.IsGlobalNamespace == nil {
		o.IsGlobalNamespace = func(string) bool { return false }
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 250 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 15 * time.Second
	}
	if o.MaxNetworksPerPod <= 0 {
		o.MaxNetworksPerPod = attachment.DefaultMaxElements
	}
	if o.ReconcileBudget <= 0 {
		o.ReconcileBudget = 2 * time.Minute
	}
	if o.FinalizerTimeout <= 0 {
		o.FinalizerTimeout = 5 * time.Minute
	}
	if o.StepsInParallel <= 0 {
		o.StepsInParallel = 4
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// key is a work item: a pod by namespace/name, or, with only UID set, the leftovers of a pod
// that is gone.
type key struct {
	Namespace, Name string
	UID             types.UID
}

func (k key) String() string {
	if k.Name == "" {
		return "deleted pod " + string(k.UID)
	}
	return k.Namespace + "/" + k.Name
}

const uidIndex = "uid"

var everything = labels.Everything()

// Controller keeps the secondary interfaces of this node's pods equal to what they ask for.
type Controller struct {
	opts        Options
	podInformer cache.SharedIndexInformer
	nadInformer cache.SharedIndexInformer
	pods        corelisters.PodLister
	nads        nadlisters.NetworkAttachmentDefinitionLister
	// plugs and releases are the two queues (see the package comment).
	plugs, releases workqueue.TypedRateLimitingInterface[key]
	informers       []interface{ Start(<-chan struct{}) }

	runtime     Runtime
	exec        Executor
	writer      PodWriter
	checkpoints Checkpoints
	recorder    record.EventRecorder

	// locks keeps two workers (of either queue) off one pod.
	// locks is a mutex per pod, held for a whole reconcile: a pod can be in both queues at once
	// while it changes state (a plug under way when its deletion arrives).
	locks keylock.Set
	// selections caches each pod's parsed selection by resourceVersion.
	selections selectionCache
	// poolWaiters are the pods waiting for a free device of a pool (hotplug.go).
	poolWaiters poolWaiters
	// atCreation remembers what pods asked Multus for at creation (see creationSelections).
	atCreation creationSelections
	// written maps pod UID to netplug's last status write, so a reconcile never acts on a
	// cached pod older than its own write.
	written sync.Map
	// attached counts managed interfaces per pod, for the attachments gauge.
	attachedMu sync.Mutex
	attached   map[types.UID]int
	synced     chan struct{}
}

// New wires the controller. It watches only pods bound to opts.NodeName.
func New(opts Options, kube kubernetes.Interface, nads nadclient.Interface, rt Runtime, exec Executor,
	writer PodWriter, cp Checkpoints, recorder record.EventRecorder) (*Controller, error) {
	if opts.NodeName == "" {
		return nil, fmt.Errorf("node name is required")
	}
	opts.defaults()
	podFactory := informers.NewSharedInformerFactoryWithOptions(kube, opts.ResyncPeriod,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", opts.NodeName).String()
		}))
	nadFactory := nadinformers.NewSharedInformerFactory(nads, opts.ResyncPeriod)
	limiter := func() workqueue.TypedRateLimiter[key] {
		return workqueue.NewTypedItemExponentialFailureRateLimiter[key](opts.RetryBase, opts.RetryMax)
	}
	c := &Controller{
		opts:        opts,
		podInformer: podFactory.Core().V1().Pods().Informer(),
		nadInformer: nadFactory.K8sCniCncfIo().V1().NetworkAttachmentDefinitions().Informer(),
		pods:        podFactory.Core().V1().Pods().Lister(),
		nads:        nadFactory.K8sCniCncfIo().V1().NetworkAttachmentDefinitions().Lister(),
		plugs: workqueue.NewTypedRateLimitingQueueWithConfig(limiter(),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "pods"}),
		releases: workqueue.NewTypedRateLimitingQueueWithConfig(limiter(),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "releases"}),
		informers:   []interface{ Start(<-chan struct{}) }{podFactory, nadFactory},
		runtime:     rt,
		exec:        exec,
		writer:      writer,
		checkpoints: cp,
		recorder:    recorder,
		attached:    map[types.UID]int{},
		synced:      make(chan struct{}),
		atCreation:  creationSelections{dir: opts.CreationDir},
	}
	if err := c.podInformer.SetTransform(trimPod); err != nil {
		return nil, err
	}
	if err := c.podInformer.AddIndexers(cache.Indexers{uidIndex: podUID}); err != nil {
		return nil, err
	}
	if _, err := c.podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueuePod,
		UpdateFunc: func(_, obj interface{}) { c.enqueuePod(obj) },
		DeleteFunc: c.podDeleted,
	}); err != nil {
		return nil, err
	}
	if _, err := c.nadInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.nadChanged,
		UpdateFunc: func(_, obj interface{}) { c.nadChanged(obj) },
	}); err != nil {
		return nil, err
	}
	return c, nil
}

// trimPod keeps in the cache only what a reconcile reads: identity, the two Multus
// annotations, finalizers, the node, hostNetwork, the phase, and the extended-resource limits
// of its containers (a device pool's NICs). Images, commands, volumes, managed fields,
// conditions and other annotations (a last-applied configuration can be kilobytes) are
// dropped, so the cache costs a few hundred bytes a pod.
func trimPod(obj interface{}) (interface{}, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	trimmed := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			DeletionTimestamp: pod.DeletionTimestamp, Finalizers: pod.Finalizers,
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName, HostNetwork: pod.Spec.HostNetwork,
			InitContainers: extendedLimits(pod.Spec.InitContainers), Containers: extendedLimits(pod.Spec.Containers)},
		Status: corev1.PodStatus{Phase: pod.Status.Phase},
	}
	for _, k := range []string{nadv1.NetworkAttachmentAnnot, nadv1.NetworkStatusAnnot} {
		if v, ok := pod.Annotations[k]; ok {
			if trimmed.Annotations == nil {
				trimmed.Annotations = map[string]string{}
			}
			trimmed.Annotations[k] = v
		}
	}
	return trimmed, nil
}

// extendedLimits keeps of each container only its limits of extended resources (names with a
// domain, such as netplug.io/veth): what says that the pod holds a pool's devices.
func extendedLimits(containers []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range containers {
		limits := corev1.ResourceList{}
		for name, q := range c.Resources.Limits {
			if strings.Contains(string(name), "/") {
				limits[name] = q
			}
		}
		if len(limits) > 0 {
			out = append(out, corev1.Container{Name: c.Name, Resources: corev1.ResourceRequirements{Limits: limits}})
		}
	}
	return out
}

func podUID(obj interface{}) ([]string, error) {
	if pod, ok := obj.(*corev1.Pod); ok {
		return []string{string(pod.UID)}, nil
	}
	return nil, nil
}

// Run starts the informers and workers and blocks until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.plugs.ShutDown()
	defer c.releases.ShutDown()
	logger := klog.FromContext(ctx)
	for _, f := range c.informers {
		f.Start(ctx.Done())
	}
	logger.Info("Waiting for informer caches", "node", c.opts.NodeName)
	if !cache.WaitForCacheSync(ctx.Done(), c.podInformer.HasSynced, c.nadInformer.HasSynced) {
		return fmt.Errorf("informer caches did not sync: %w", ctx.Err())
	}
	c.restoreDevices(ctx)
	c.enqueueOrphans(ctx)
	c.atCreation.prune(c.podExists)
	close(c.synced)
	logger.Info("Starting workers", "plug", c.opts.Workers, "release", c.opts.ReleaseWorkers)
	var wg sync.WaitGroup
	start := func(q workqueue.TypedRateLimitingInterface[key], n int) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wait.UntilWithContext(ctx, func(ctx context.Context) {
					for c.processNext(ctx, q) {
					}
				}, time.Second)
			}()
		}
	}
	start(c.plugs, c.opts.Workers)
	start(c.releases, c.opts.ReleaseWorkers)
	<-ctx.Done()
	c.plugs.ShutDown()
	c.releases.ShutDown()
	wg.Wait()
	logger.Info("Workers stopped")
	return nil
}

// Synced reports whether the caches have synced and workers run; it backs /readyz.
func (c *Controller) Synced(context.Context) error {
	select {
	case <-c.synced:
		return nil
	default:
		return fmt.Errorf("informer caches not synced yet")
	}
}

func (c *Controller) processNext(runCtx context.Context, q workqueue.TypedRateLimitingInterface[key]) bool {
	k, shutdown := q.Get()
	if shutdown {
		return false
	}
	defer q.Done(k)
	if runCtx.Err() != nil {
		return false // stopping: what is still queued is the next process's (it relists)
	}
	// A reconcile that has begun is finished even if the controller is asked to stop meanwhile:
	// cut short, it leaves ADDs and DELs whose answers were dropped and a status never written
	// (the soak found network-status drifting from the pod after a graceful stop). It gets
	// DrainTimeout after the stop request, then its calls are cancelled.
	ctx, cancel := context.WithCancel(context.WithoutCancel(runCtx))
	defer cancel()
	stopDrain := context.AfterFunc(runCtx, func() { time.AfterFunc(c.opts.DrainTimeout, cancel) })
	defer stopDrain()
	logger := klog.FromContext(ctx).WithValues("pod", k.String())
	ctx = klog.NewContext(ctx, logger)
	start := time.Now()
	err := c.sync(ctx, k)
	result := metrics.ResultSuccess
	switch {
	case err == nil:
		q.Forget(k)
	case isRequeue(err):
		result = metrics.ResultRequeue
		logger.V(2).Info("Requeued", "reason", err.Error())
		if after := requeueAfter(err); after > 0 {
			q.AddAfter(k, after)
		} else {
			q.AddRateLimited(k)
		}
	default:
		result = metrics.ResultError
		logger.Error(err, "Reconcile failed; will retry", "retries", q.NumRequeues(k))
		q.AddRateLimited(k)
	}
	var by retryByError
	if errors.As(err, &by) {
		q.AddAfter(k, by.by.Sub(c.opts.Now())+time.Second) // the earlier of the two wins
	}
	metrics.ReconcileDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return true
}

// queueFor sends pods that only need releasing to the release queue.
func (c *Controller) queueFor(pod *corev1.Pod) workqueue.TypedRateLimitingInterface[key] {
	if pod.DeletionTimestamp != nil || podCompleted(pod) {
		return c.releases
	}
	return c.plugs
}

func podCompleted(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

func (c *Controller) enqueuePod(obj interface{}) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != c.opts.NodeName {
		return
	}
	if sel, err := c.selections.get(pod, c.opts.MaxNetworksPerPod); err == nil {
		c.atCreation.saw(pod, sel)
	}
	c.queueFor(pod).Add(key{Namespace: pod.Namespace, Name: pod.Name})
}

func (c *Controller) podDeleted(obj interface{}) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	c.written.Delete(pod.UID)
	c.selections.forget(pod.UID)
	c.atCreation.forget(pod.UID)
	c.setAttached(pod.UID, 0)
	c.releases.Add(key{UID: pod.UID})
}

// nadChanged re-enqueues the pods of this node that select the NAD, so a pod waiting for a NAD
// that did not exist yet converges as soon as it appears. Selections come from the cache: a
// NAD event costs a parse only for pods whose annotation changed since.
func (c *Controller) nadChanged(obj interface{}) {
	nad, ok := obj.(*nadv1.NetworkAttachmentDefinition)
	if !ok {
		return
	}
	pods, err := c.pods.List(everything)
	if err != nil {
		return
	}
	for _, pod := range pods {
		sel, err := c.selections.get(pod, c.opts.MaxNetworksPerPod)
		if err != nil {
			continue
		}
		for _, a := range sel.Attachments {
			if a.Namespace == nad.Namespace && a.Network == nad.Name {
				c.queueFor(pod).Add(key{Namespace: pod.Namespace, Name: pod.Name})
				break
			}
		}
	}
}

// enqueueOrphans queues the checkpointed pods that are gone: the controller may have been down
// when they were deleted, and their interfaces still hold IPAM allocations.
func (c *Controller) enqueueOrphans(ctx context.Context) {
	uids, err := c.checkpoints.Pods()
	if err != nil {
		klog.FromContext(ctx).Error(err, "Listing checkpoints for leftover pods")
		return
	}
	for _, uid := range uids {
		if !c.podExists(types.UID(uid)) {
			c.releases.Add(key{UID: types.UID(uid)})
		}
	}
}

func (c *Controller) podExists(uid types.UID) bool {
	objs, _ := c.podInformer.GetIndexer().ByIndex(uidIndex, string(uid))
	return len(objs) > 0
}

func (c *Controller) setAttached(uid types.UID, n int) {
	c.attachedMu.Lock()
	defer c.attachedMu.Unlock()
	if n == 0 {
		delete(c.attached, uid)
	} else {
		c.attached[uid] = n
	}
	total := 0
	for _, v := range c.attached {
		total += v
	}
	metrics.Attachments.Set(float64(total))
}

// lastWrite is netplug's last network-status write to a pod.
type lastWrite struct {
	resourceVersion string
	networkStatus   string
}

// staleCache reports whether the cached pod predates netplug's own last write to it. etcd's
// resourceVersions are increasing integers; where they are not (they are opaque by contract),
// the cache has caught up once it shows the network-status netplug wrote.
func (c *Controller) staleCache(pod *corev1.Pod) bool {
	v, ok := c.written.Load(pod.UID)
	if !ok {
		return false
	}
	w := v.(lastWrite)
	caughtUp := pod.Annotations[nadv1.NetworkStatusAnnot] == w.networkStatus
	wrote, err1 := strconv.ParseUint(w.resourceVersion, 10, 64)
	have, err2 := strconv.ParseUint(pod.ResourceVersion, 10, 64)
	if err1 == nil && err2 == nil {
		caughtUp = have >= wrote
	}
	if caughtUp {
		c.written.Delete(pod.UID)
	}
	return !caughtUp
}

func (c *Controller) rememberWrite(pod *corev1.Pod) {
	c.written.Store(pod.UID, lastWrite{pod.ResourceVersion, pod.Annotations[nadv1.NetworkStatusAnnot]})
}
