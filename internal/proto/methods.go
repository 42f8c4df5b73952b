package proto

import "strconv"

// methodNames names every method for logs and metric labels: the role,
// then the operation, in snake case.
var methodNames = map[uint16]string{
	MgmtdGetRouting:      "mgmtd_get_routing",
	MgmtdHeartbeat:       "mgmtd_heartbeat",
	MgmtdRegisterNode:    "mgmtd_register_node",
	MgmtdRegisterTargets: "mgmtd_register_targets",
	MgmtdCreateChain:     "mgmtd_create_chain",
	MgmtdSetChainTable:   "mgmtd_set_chain_table",
	MgmtdSetTargetState:  "mgmtd_set_target_state",
	MgmtdAddToChainTable: "mgmtd_add_to_chain_table",
	MgmtdPlaceChains:     "mgmtd_place_chains",

	MethodMetaLookup:        "meta_lookup",
	MethodMetaStat:          "meta_stat",
	MethodMetaStatPath:      "meta_stat_path",
	MethodMetaReadDir:       "meta_read_dir",
	MethodMetaMkdir:         "meta_mkdir",
	MethodMetaCreate:        "meta_create",
	MethodMetaOpen:          "meta_open",
	MethodMetaClose:         "meta_close",
	MethodMetaReportLength:  "meta_report_length",
	MethodMetaUnlink:        "meta_unlink",
	MethodMetaRmdir:         "meta_rmdir",
	MethodMetaRename:        "meta_rename",
	MethodMetaSymlink:       "meta_symlink",
	MethodMetaReadlink:      "meta_readlink",
	MethodMetaLink:          "meta_link",
	MethodMetaSetAttr:       "meta_set_attr",
	MethodMetaSetLayout:     "meta_set_layout",
	MethodMetaStatFS:        "meta_statfs",
	MethodMetaRemoveAll:     "meta_remove_all",
	MethodMetaWhoAmI:        "meta_whoami",
	MethodMetaCreateTemp:    "meta_create_temp",
	MethodMetaPublish:       "meta_publish",
	MethodMetaCapability:    "meta_capability",
	MethodMetaUserAdd:       "meta_user_add",
	MethodMetaUserList:      "meta_user_list",
	MethodMetaUserRemove:    "meta_user_remove",
	MethodMetaUserToken:     "meta_user_token",
	MethodMetaCredentials:   "meta_credentials",
	MethodMetaGCList:        "meta_gc_list",
	MethodMetaGCDone:        "meta_gc_done",
	MethodMetaPruneSessions: "meta_prune_sessions",

	MethodStorageRead:        "storage_read",
	MethodStorageWrite:       "storage_write",
	MethodStorageTruncate:    "storage_truncate",
	MethodStorageRemove:      "storage_remove",
	MethodStorageStat:        "storage_stat",
	MethodStorageRemoveInode: "storage_remove_inode",
	MethodStorageLocate:      "storage_locate",
	MethodStorageForward:     "storage_forward",
	MethodStorageDump:        "storage_dump",
	MethodStorageRepair:      "storage_repair",
	MethodStorageScrub:       "storage_scrub",
}

// MethodName is the name of method m ("storage_read"), or "method_N" for a
// number no method has.
func MethodName(m uint16) string {
	if n, ok := methodNames[m]; ok {
		return n
	}
	return "method_" + strconv.Itoa(int(m))
}

// MethodKnown reports whether m is the number of a method.
func MethodKnown(m uint16) bool {
	_, ok := methodNames[m]
	return ok
}
